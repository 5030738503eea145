"""Build the project's container images offline, from its own Dockerfiles.

Why this exists: the local kubelet node (node.py) runs the operator and the
component images in real containers, but this machine (like CI) reaches no
image registry: neither python:3.11-slim nor ghcr.io/schedexec/* can be
pulled. Package registries are reachable, so the images are built here, from
the same Dockerfiles users build with ``docker build``, kept as archives,
and pushed to the local cluster's own registry (``push_images``; registry.py),
which the node pulls them from (the pause image alone is imported with
``ctr -n k8s.io images import``, as kind's ``load image-archive`` would):

1. Base images come from Debian's packages instead of a registry. mmdebstrap
   makes a root filesystem from THE MACHINE'S OWN apt sources (read at build
   time from /etc/apt; no mirror is named in the repository), for the suite
   of the machine's /etc/os-release. hack/images/python-base/Dockerfile turns
   it into the stand-in for python:3.11-slim (Debian's python3 with a virtual
   environment first on PATH, because Debian's Python is PEP 668 "externally
   managed"); hack/images/pause/Dockerfile into the node's pod sandbox image
   (Debian's statically linked catatonit).
2. buildah builds the Dockerfiles (runner, operator, examples, test component) with
   ``--build-arg BASE_IMAGE=<the offline base>`` and ``--pull=never``, so the
   examples' ``FROM ghcr.io/schedexec/runner:0.1.0`` is the runner just
   built. RUN steps use the host network, and pip inside them uses the
   machine's pip configuration (its config files and PIP_* variables, and
   the CA bundle or wheel directories they name), mounted read-only at
   /etc/xdg/pip, a directory the base image keeps empty, so no mount point
   is left in the images. buildah keeps its storage under the cache (never
   the host's /var/lib/containers).
3. Each image is exported as an OCI archive whose index names it
   (org.opencontainers.image.ref.name = the full reference, which
   ``ctr images import`` uses as the image name).
4. ``push_images`` pushes them from buildah's storage (loaded from the
   archive if it is not there) to a registry with TLS and credentials,
   optionally committed first with labels (a release's OCI labels,
   release.py); ``extra`` images (your component's directory) are built
   and pushed the same way.

Everything is cached by content under ``${SCHEDEXEC_CACHE_DIR:-~/.cache/schedexec}/images``:
an image's key hashes its Dockerfile, the files its COPY/ADD instructions
take from the build context (caches such as __pycache__ excluded), its build
arguments and its base image's key; a base's key hashes its Dockerfile and
its mmdebstrap recipe (suite, architecture, the machine's apt sources,
packages). A warm run only hashes and finds the archives. Builds hold a file
lock, and archives appear by atomic rename, so concurrent callers neither
corrupt the cache nor see half-written archives.

Needs (Debian packages): buildah, mmdebstrap; run as root.
"""

from __future__ import annotations

import argparse
import base64
import collections
import configparser
import contextlib
import dataclasses
import fcntl
import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

VERSION = "0.1.0"
"""The project's version: the tag of the images (and of the examples' FROM)."""
REGISTRY = "ghcr.io/schedexec"
EXAMPLES: tuple[str, ...] = ("shop", "sandbox", "ratelimited")

PAUSE_IMAGE = "localhost/schedexec/pause:1.0"
"""The node's pod sandbox image (node.SANDBOX_IMAGE pins the same name)."""
PYTHON_BASE_REPOSITORY = "localhost/schedexec/python-base"
"""The offline base's repository; its tag is (a prefix of) its key."""
BASE_IMAGE_ARG = "BASE_IMAGE"
"""The build argument the Dockerfiles take their Python base image from."""

CACHE_DIR_ENV_VAR = "SCHEDEXEC_CACHE_DIR"
STORAGE_DRIVER_ENV_VAR = "SCHEDEXEC_BUILDAH_STORAGE_DRIVER"
"""buildah's storage driver (default overlay; vfs where overlay cannot nest, e.g. on overlayfs)."""
DEFAULT_STORAGE_DRIVER = "overlay"

RECIPE_VERSION = 1
"""Part of every key: bump it when the way images are built or archived changes."""
KEY_LABEL = "io.schedexec.image-key"
"""Image label holding the key, to recognise an image already in buildah's storage."""
PIP_CONFIG_MOUNT = "/etc/xdg/pip"
"""pip's system-wide configuration directory, where RUN steps see the machine's pip configuration."""
# --- elastic.io components (sailor, issue 29): a Node base from Debian's packages, npm's configuration ---
NODE_BASE_REPOSITORY = "localhost/schedexec/node-base"
"""The stand-in for node:<major>-slim (hack/images/node-base), under a tag of its key."""
NODE_BASE_IMAGE_ARG = "NODE_BASE_IMAGE"
"""The build argument an image's Dockerfile declares to build FROM the node base."""
NPM_CONFIG_MOUNT = "/etc/xdg/npm"
"""Where RUN steps of an image FROM the node base see the machine's npm configuration (its npmrc: the node base's
NPM_CONFIG_GLOBALCONFIG)."""
NPM_KEYS: tuple[str, ...] = (
    "registry",
    "cafile",
    "strict-ssl",
    "proxy",
    "https-proxy",
    "noproxy",
    "fetch-retries",
    "fetch-timeout",
    "replace-registry-host",
)
"""The machine's npm settings that concern fetching (and every `@scope:registry`); never an auth token."""
NPM_PATH_KEYS: tuple[str, ...] = ("cafile",)

CONTEXT_EXCLUDES: tuple[str, ...] = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    "*.egg-info",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
)
"""Names never taken into a build context: local caches, not sources (no .dockerignore needed)."""

DPKG_OPTIONS: tuple[str, ...] = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/locale/*",
)
"""Slim images, as python:3.11-slim: no documentation but the licences, no translations."""
CUSTOMIZE_HOOKS: tuple[str, ...] = (
    # The machine's apt options (proxies, snapshot settings) were for this build only.
    'rm -f "$1/etc/apt/apt.conf.d/99mmdebstrap"',
    # mmdebstrap copies them from the host; the container runtime provides its own.
    ': > "$1/etc/resolv.conf"',
    ': > "$1/etc/hostname"',
)
APT_OPTION_PREFIXES: tuple[str, ...] = (
    "Acquire::Check-Valid-Until",
    "Acquire::Check-Date",
    "Acquire::http::Proxy",
    "Acquire::https::Proxy",
    "Acquire::https::CaInfo",
    "Acquire::Retries",
)
"""The machine's apt settings that concern fetching (not what is fetched) and so reach mmdebstrap."""
PIP_PATH_KEYS: tuple[str, ...] = ("cert", "client-cert")
PIP_PATH_LIST_KEYS: tuple[str, ...] = ("find-links",)

_TAIL_LINES = 40
_SIGNATURE_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class ImageBuildError(RuntimeError):
    """An image could not be built or exported; the message says which and why."""


# --- what is built ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """An image built from a Dockerfile of the repository (paths relative to the repository root)."""

    name: str
    dockerfile: str
    context: str


@dataclasses.dataclass(frozen=True)
class RootfsSpec:
    """An image whose build context is a Debian root filesystem (rootfs.tar) made by mmdebstrap."""

    name: str
    """The name, or for a key-tagged image the repository (``tagged_by_key``)."""
    dockerfile: str
    variant: str
    packages: tuple[str, ...]
    tagged_by_key: bool = False
    exported: bool = True
    """Whether ensure_images returns its archive (the python base is only built upon)."""


PYTHON_BASE = RootfsSpec(
    name=PYTHON_BASE_REPOSITORY,
    dockerfile="hack/images/python-base/Dockerfile",
    variant="minbase",
    packages=("python3", "python3-venv", "ca-certificates"),
    tagged_by_key=True,
    exported=False,
)
PAUSE = RootfsSpec(
    name=PAUSE_IMAGE,
    dockerfile="hack/images/pause/Dockerfile",
    variant="extract",
    packages=("catatonit",),
)
NODE_BASE = RootfsSpec(
    name=NODE_BASE_REPOSITORY,
    dockerfile="hack/images/node-base/Dockerfile",
    variant="minbase",
    packages=("nodejs", "npm", "ca-certificates"),
    tagged_by_key=True,
    exported=False,
)
ROOTFS_IMAGES: tuple[RootfsSpec, ...] = (PYTHON_BASE, PAUSE, NODE_BASE)

IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(f"{REGISTRY}/runner:{VERSION}", "runner-image/Dockerfile", "runner-image"),
    ImageSpec(f"{REGISTRY}/operator:{VERSION}", "Dockerfile", "."),
    *(
        ImageSpec(f"{REGISTRY}/example-{name}:{VERSION}", f"examples/{name}/Dockerfile", f"examples/{name}")
        for name in EXAMPLES
    ),
    # The operator test suite's component, for tests on the real node (tag `dev`, as the tests name it).
    ImageSpec(f"{REGISTRY}/test-component:dev", "tests/components/Dockerfile", "tests/components"),
    # XSOAR integrations from demisto/content, unmodified, on the XSOAR runtime (tests/node/test_xsoar_native.py).
    *(
        ImageSpec(f"{REGISTRY}/xsoar-{name}:dev", f"tests/components/xsoar/{name}.Dockerfile", "tests")
        for name in ("arcanna", "cape")
    ),
    # elastic.io's own components, unmodified, built the elastic.io way (tests/node/test_elasticio_native.py).
    *(
        ImageSpec(
            f"{REGISTRY}/test-elasticio-{name}:dev",
            f"tests/components/elasticio/{name}/Dockerfile",
            f"tests/thirdparty/elasticio-{repository}",
        )
        for name, repository in (("petstore", "petstore-component-nodejs"), ("splitter", "splitter-component"))
    ),
)
"""The project's images, each after the image it builds FROM."""


@dataclasses.dataclass(frozen=True)
class ImageArchive:
    """A built image: its name, the OCI archive to import (``ctr -n k8s.io images import``), and its cache key."""

    name: str
    archive: Path
    key: str


# --- Dockerfiles ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper case, e.g. ``COPY``."""
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, continuation lines joined (escape char ``\\``)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # blank lines and comments, also inside a continuation
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        _append_instruction(instructions, " ".join(part for part in pending if part))
        pending = []
    if pending:
        _append_instruction(instructions, " ".join(part for part in pending if part))
    return instructions


def _append_instruction(instructions: list[Instruction], line: str) -> None:
    if not line:
        return
    keyword, _, args = line.partition(" ")
    instructions.append(Instruction(keyword.upper(), args.strip()))


def _split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """``--name=value`` flags and the remaining words (JSON form or whitespace-separated)."""
    flags: dict[str, str] = {}
    rest = args.strip()
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name.lower()] = value
        rest = rest.strip()
    if rest.startswith("["):
        with contextlib.suppress(ValueError):
            words = json.loads(rest)
            if isinstance(words, list) and all(isinstance(word, str) for word in words):
                return flags, list(words)
    return flags, rest.split()


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths the Dockerfile's COPY and ADD instructions take, in order.

    ``--from`` copies (from a stage or an image) take nothing from the context.
    """
    sources: list[str] = []
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword not in ("COPY", "ADD"):
            continue
        flags, words = _split_flags(instruction.args)
        if "from" in flags:
            continue
        if len(words) < 2:
            raise ImageBuildError(f"{instruction.keyword} needs a source and a destination: {instruction.args!r}")
        for source in words[:-1]:
            if "://" in source:
                raise ImageBuildError(f"{instruction.keyword} {source}: fetching URLs is not supported offline")
            if source not in sources:
                sources.append(source)
    return sources


_VARIABLE = re.compile(r"\$\{(\w+)(?::([-+])([^}]*))?\}|\$(\w+)")


def substitute(word: str, variables: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME:+alt}``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        value = variables.get(name, "")
        if match.group(2) == "-":
            return value or match.group(3)
        if match.group(2) == "+":
            return match.group(3) if value else ""
        return value

    return _VARIABLE.sub(replace, word)


def global_args(dockerfile: str) -> dict[str, str]:
    """The ARGs declared before the first FROM (the ones FROM may use), with their defaults."""
    declared: dict[str, str] = {}
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            for word in instruction.args.split():
                name, _, default = word.partition("=")
                declared[name] = default.strip("\"'")
    return declared


def resolve_from(dockerfile: str, build_args: Mapping[str, str]) -> str:
    """The image the final stage builds on, after substituting ARGs; a stage name resolves to its image."""
    variables = {**global_args(dockerfile)}
    variables.update({name: value for name, value in build_args.items() if name in variables})
    stages: dict[str, str] = {}
    base: str | None = None
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword != "FROM":
            continue
        _, words = _split_flags(instruction.args)
        if not words:
            raise ImageBuildError("FROM without an image")
        image = substitute(words[0], variables)
        image = stages.get(image.lower(), image)
        if len(words) >= 3 and words[1].lower() == "as":
            stages[words[2].lower()] = image
        base = image
    if base is None:
        raise ImageBuildError("the Dockerfile has no FROM")
    return base


# --- build contexts and keys ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ContextEntry:
    """One path of a build context, read once: what is hashed is what is staged."""

    path: str
    """POSIX, relative to the context."""
    kind: str
    """``file``, ``dir`` or ``symlink``."""
    mode: int = 0o644
    data: bytes = b""
    """A file's content, a symlink's target."""


def is_excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in CONTEXT_EXCLUDES)


def collect_context(context_dir: Path, sources: Sequence[str]) -> list[ContextEntry]:
    """The entries of ``context_dir`` that ``sources`` name (directories recursively), excluded names left out."""
    root = context_dir.resolve()
    entries: dict[str, ContextEntry] = {}
    for source in sources:
        relative = PurePosixPath(source.lstrip("/"))
        if ".." in relative.parts:
            raise ImageBuildError(f"{source!r} leaves the build context {context_dir}")
        matches = sorted(root.glob(str(relative))) if any(c in source for c in "*?[") else [root / relative]
        if not matches or not all(path.exists() or path.is_symlink() for path in matches):
            raise ImageBuildError(f"{source!r} is not in the build context {context_dir}")
        for path in matches:
            for entry in _walk(root, path):
                entries[entry.path] = entry
    return [entries[path] for path in sorted(entries)]


def _walk(root: Path, path: Path) -> Iterator[ContextEntry]:
    relative = path.relative_to(root).as_posix()
    if is_excluded(path.name):
        return
    if path.is_symlink():
        yield ContextEntry(relative, "symlink", 0o777, os.readlink(path).encode())
    elif path.is_dir():
        if relative != ".":
            yield ContextEntry(relative, "dir", path.stat().st_mode & 0o7777)
        for child in sorted(path.iterdir()):
            yield from _walk(root, child)
    elif path.is_file():
        yield ContextEntry(relative, "file", path.stat().st_mode & 0o7777, path.read_bytes())


def stage_context(entries: Iterable[ContextEntry], destination: Path) -> None:
    """Write ``entries`` under ``destination``: the build context buildah sees."""
    destination.mkdir(parents=True, exist_ok=True)
    directories: list[tuple[Path, int]] = []
    for entry in entries:
        target = destination / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            target.mkdir(exist_ok=True)
            directories.append((target, entry.mode))
        elif entry.kind == "symlink":
            os.symlink(entry.data.decode(), target)
        else:
            target.write_bytes(entry.data)
            os.chmod(target, entry.mode)
    for directory, mode in reversed(directories):
        os.chmod(directory, mode)


def _digest(document: object) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def image_key(
    *,
    name: str,
    dockerfile: str,
    entries: Sequence[ContextEntry],
    build_args: Mapping[str, str],
    base_key: str | None,
) -> str:
    """The cache key of an image built from a Dockerfile: sha256 over everything its content depends on."""
    context = sorted([entry.path, entry.kind, entry.mode, hashlib.sha256(entry.data).hexdigest()] for entry in entries)
    return _digest(
        {
            "recipe": RECIPE_VERSION,
            "name": name,
            "dockerfile": dockerfile,
            "context": context,
            "build_args": dict(build_args),
            "base": base_key,
        }
    )


# --- the machine: apt sources, suite, architecture, apt and pip settings ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class AptSources:
    """The machine's apt entries for one suite, as files for mmdebstrap (one-line and deb822 formats)."""

    one_line: str = ""
    deb822: str = ""

    def __bool__(self) -> bool:
        return bool(self.one_line or self.deb822)


def os_release_codename(text: str) -> str:
    """The release code name (``bookworm``) from an os-release file."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip()] = value.strip().strip("\"'")
    codename = fields.get("VERSION_CODENAME", "")
    if not codename:
        match = re.search(r"\(([a-z]+)\)", fields.get("VERSION", ""))
        codename = match.group(1) if match else ""
    if not codename:
        raise ImageBuildError("the machine's os-release names no release (VERSION_CODENAME)")
    return codename


def suite_matches(suite: str, codename: str) -> bool:
    """``bookworm``, ``bookworm-updates``, ``bookworm-security``... are the release's suites."""
    return suite == codename or suite.startswith(codename + "-")


_ONE_LINE = re.compile(r"^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)(?:\s+(.*))?$")


def one_line_sources(text: str, codename: str) -> list[str]:
    """The ``deb`` lines of a sources.list for the release's suites, normalised."""
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _ONE_LINE.match(line)
        if not match or match.group(1) != "deb" or not suite_matches(match.group(4), codename):
            continue
        options = f"[{match.group(2).strip()}] " if match.group(2) and match.group(2).strip() else ""
        components = " ".join((match.group(5) or "").split())
        kept.append(f"deb {options}{match.group(3)} {match.group(4)} {components}".rstrip())
    return kept


def deb822_sources(text: str, codename: str) -> list[str]:
    """The enabled ``deb`` stanzas of a .sources file, narrowed to the release's suites.

    Fields keep their continuation lines (e.g. a Signed-By with an embedded key).
    """
    kept: list[str] = []
    for stanza in _deb822_stanzas(text):
        fields = {name.lower(): (name, value) for name, value in stanza}
        if fields.get("enabled", ("", "yes"))[1].strip().lower() == "no":
            continue
        if "deb" not in fields.get("types", ("", ""))[1].split():
            continue
        suites = [suite for suite in fields.get("suites", ("", ""))[1].split() if suite_matches(suite, codename)]
        if not suites or "uris" not in fields:
            continue
        lines: list[str] = []
        for name, value in stanza:
            if name.lower() == "types":
                value = "deb"
            elif name.lower() == "suites":
                value = " ".join(suites)
            lines.append(f"{name}: {value}")
        kept.append("\n".join(lines))
    return kept


def _deb822_stanzas(text: str) -> Iterator[list[tuple[str, str]]]:
    stanza: list[tuple[str, str]] = []
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanza:
                yield stanza
            stanza = []
        elif raw[0] in " \t" and stanza:
            name, value = stanza[-1]
            stanza[-1] = (name, f"{value}\n{raw.rstrip()}")
        else:
            name, _, value = raw.partition(":")
            stanza.append((name.strip(), value.strip()))


def machine_sources(files: Sequence[tuple[str, str]], codename: str) -> AptSources:
    """The release's apt entries from the machine's source files, given as (file name, content) in apt's order."""
    one_line: list[str] = []
    deb822: list[str] = []
    for name, content in files:
        if name.endswith(".sources"):
            deb822.extend(deb822_sources(content, codename))
        else:
            one_line.extend(one_line_sources(content, codename))
    return AptSources(
        one_line="".join(f"{line}\n" for line in one_line),
        deb822="\n\n".join(deb822) + "\n" if deb822 else "",
    )


_APT_CONFIG_LINE = re.compile(r'^(\S+)\s+"(.*)";$')


def apt_options(dump: str) -> list[str]:
    """The fetching-related settings of ``apt-config dump`` output, as mmdebstrap ``--aptopt`` values."""
    options: list[str] = []
    for line in dump.splitlines():
        match = _APT_CONFIG_LINE.match(line.strip())
        if match and match.group(2) and any(match.group(1).startswith(prefix) for prefix in APT_OPTION_PREFIXES):
            options.append(f'{match.group(1)} "{match.group(2)}";')
    return options


@dataclasses.dataclass(frozen=True)
class Machine:
    """What the offline builds take from this machine (read by ``read_machine``)."""

    codename: str
    architecture: str
    apt_source_files: tuple[tuple[str, str], ...]
    """(file name, content) in the order apt reads them."""
    apt_options: tuple[str, ...] = ()


def read_machine(etc: Path = Path("/etc")) -> Machine:
    """This machine's release, architecture, apt sources and apt fetch settings."""
    codename = os_release_codename(_read_first(etc / "os-release", Path("/usr/lib/os-release")))
    files: list[tuple[str, str]] = []
    main_list = etc / "apt" / "sources.list"
    if main_list.is_file():
        files.append((str(main_list), main_list.read_text()))
    parts = etc / "apt" / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix in (".list", ".sources") and path.is_file():
                files.append((str(path), path.read_text()))
    architecture = _command_output(["dpkg", "--print-architecture"]) or os.uname().machine
    dump = _command_output(["apt-config", "dump"])
    return Machine(codename, architecture, tuple(files), tuple(apt_options(dump)))


def _read_first(*paths: Path) -> str:
    for path in paths:
        if path.is_file():
            return path.read_text()
    raise ImageBuildError(f"none of {', '.join(map(str, paths))} exists: cannot tell the Debian release")


def _command_output(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


@dataclasses.dataclass(frozen=True)
class RootfsRecipe:
    """Everything a Debian root filesystem's content depends on (apt options only say how to fetch)."""

    suite: str
    architecture: str
    sources: AptSources
    variant: str
    packages: tuple[str, ...]
    dpkg_options: tuple[str, ...] = DPKG_OPTIONS
    hooks: tuple[str, ...] = CUSTOMIZE_HOOKS


def rootfs_recipe(spec: RootfsSpec, machine: Machine) -> RootfsRecipe:
    sources = machine_sources(machine.apt_source_files, machine.codename)
    if not sources:
        names = ", ".join(name for name, _ in machine.apt_source_files) or "no source files"
        raise ImageBuildError(f"no enabled apt source for {machine.codename} on this machine ({names})")
    return RootfsRecipe(machine.codename, machine.architecture, sources, spec.variant, spec.packages)


def rootfs_key(*, name: str, dockerfile: str, recipe: RootfsRecipe) -> str:
    """The cache key of an image built from a Debian root filesystem."""
    return _digest(
        {
            "recipe": RECIPE_VERSION,
            "name": name,
            "dockerfile": dockerfile,
            "rootfs": dataclasses.asdict(recipe),
        }
    )


def mmdebstrap_command(
    recipe: RootfsRecipe,
    *,
    target: Path,
    source_files: Sequence[Path],
    apt_options: Sequence[str] = (),
    mode: str = "root",
) -> list[str]:
    """The mmdebstrap command that writes the recipe's root filesystem to the tarball ``target``."""
    return [
        "mmdebstrap",
        f"--mode={mode}",
        f"--variant={recipe.variant}",
        f"--architectures={recipe.architecture}",
        "--include=" + ",".join(recipe.packages),
        *(f"--aptopt={option}" for option in apt_options),
        *(f"--dpkgopt={option}" for option in recipe.dpkg_options),
        *(f"--customize-hook={hook}" for hook in recipe.hooks),
        recipe.suite,
        str(target),
        *(str(path) for path in source_files),
    ]


def write_source_files(sources: AptSources, directory: Path) -> list[Path]:
    """The machine's entries as files mmdebstrap reads (their names become the image's sources.list.d files)."""
    paths: list[Path] = []
    for name, content in (("debian.list", sources.one_line), ("debian.sources", sources.deb822)):
        if content:
            path = directory / name
            path.write_text(content)
            paths.append(path)
    return paths


# --- pip's configuration inside RUN steps ------------------------------------------------------------------------


def pip_config_paths(environ: Mapping[str, str], home: Path) -> list[Path]:
    """pip's configuration files, lowest priority first (global, user, then PIP_CONFIG_FILE)."""
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    paths = [Path(directory) / "pip" / "pip.conf" for directory in reversed(xdg_dirs.split(":")) if directory]
    paths.append(Path("/etc/pip.conf"))
    paths.append(home / ".pip" / "pip.conf")
    paths.append(Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    if environ.get("PIP_CONFIG_FILE"):
        paths.append(Path(environ["PIP_CONFIG_FILE"]))
    return paths


def _pip_key(name: str) -> str:
    name = name.lower().replace("_", "-")
    return name[2:] if name.startswith("--") else name


def pip_settings(configs: Sequence[str], environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """pip's effective settings by section: config files in order (later wins), then PIP_* variables.

    A variable wins over every section, as in pip, so it moves to ``global``
    and the key leaves the other sections.
    """
    if environ.get("PIP_CONFIG_FILE") == os.devnull:
        configs = ()  # pip loads no file at all then
    merged: dict[str, dict[str, str]] = {}
    for text in configs:
        parser = configparser.RawConfigParser()
        parser.read_string(text)
        for section in parser.sections():
            merged.setdefault(section, {}).update({_pip_key(key): value for key, value in parser.items(section)})
    for variable in sorted(environ):
        if not variable.startswith("PIP_") or variable == "PIP_CONFIG_FILE":
            continue
        key = _pip_key(variable[4:])
        for values in merged.values():
            values.pop(key, None)
        merged.setdefault("global", {})[key] = environ[variable]
    return {section: values for section, values in merged.items() if values}


@dataclasses.dataclass(frozen=True)
class PipBuildConfig:
    """A pip.conf for RUN steps, and the machine's files it names, provided next to it."""

    text: str
    files: tuple[tuple[str, str], ...] = ()
    """(host path, path relative to the mounted directory)."""


def pip_build_config(
    settings: Mapping[str, Mapping[str, str]],
    exists: Callable[[str], bool] = os.path.exists,
    mount: str = PIP_CONFIG_MOUNT,
) -> PipBuildConfig:
    """Rewrite settings naming machine paths (CA bundle, client cert, local find-links) to their copies in ``mount``.

    Local find-links that do not exist are dropped (pip would only warn).
    """
    provided: dict[str, str] = {}

    def provide(host_path: str) -> str:
        if host_path not in provided:
            provided[host_path] = f"files/{len(provided)}-{PurePosixPath(host_path).name or 'root'}"
        return f"{mount}/{provided[host_path]}"

    parser = configparser.RawConfigParser()
    for section in sorted(settings):
        parser.add_section(section)
        for key in sorted(settings[section]):
            value = settings[section][key]
            if key in PIP_PATH_KEYS and value and exists(value):
                value = provide(value)
            elif key in PIP_PATH_LIST_KEYS:
                links: list[str] = []
                for link in value.split():
                    local = link.removeprefix("file://") if link.startswith(("file://", "/")) else None
                    if local is None:
                        links.append(link)
                    elif exists(local):
                        links.append(provide(local))
                value = " ".join(links)
                if not value:
                    continue
            parser.set(section, key, value)
    out = io.StringIO()
    parser.write(out)
    return PipBuildConfig(out.getvalue(), tuple(provided.items()))


def materialize_pip_config(config: PipBuildConfig, directory: Path, filename: str = "pip.conf") -> None:
    """Write the pip.conf (or npm's `filename`) and copies of the files it names (directories hard-linked where
    possible)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text(config.text)
    for host_path, relative in config.files:
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(host_path)
        if source.is_dir():
            shutil.copytree(source, target, copy_function=_link_or_copy)
        else:
            shutil.copyfile(source, target)
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def machine_pip_config(environ: Mapping[str, str] | None = None, home: Path | None = None) -> PipBuildConfig:
    environ = os.environ if environ is None else environ
    paths = pip_config_paths(environ, home or Path.home())
    texts = [path.read_text() for path in paths if path.is_file()]
    return pip_build_config(pip_settings(texts, environ))


def npm_build_config(
    settings: Mapping[str, object], exists: Callable[[str], bool] = os.path.exists, mount: str = NPM_CONFIG_MOUNT
) -> PipBuildConfig:
    """An npmrc of the fetching settings among npm's effective `settings` (`npm config list --json`), the CA file
    it names rewritten to its copy in ``mount``."""
    lines: list[str] = []
    provided: dict[str, str] = {}
    for key in sorted(settings):
        value = settings[key]
        if key not in NPM_KEYS and not key.endswith(":registry"):
            continue
        if isinstance(value, list):
            value = ",".join(str(item) for item in value if item)
        if value is None or value == "":
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if key in NPM_PATH_KEYS:
            if not exists(text):
                continue
            provided.setdefault(text, f"files/{len(provided)}-{PurePosixPath(text).name or 'root'}")
            text = f"{mount}/{provided[text]}"
        lines.append(f"{key}={text}\n")
    return PipBuildConfig("".join(lines), tuple(provided.items()))


def machine_npm_config() -> PipBuildConfig:
    """The machine's npm configuration for RUN steps (read at build time, as pip's is): none without npm."""
    listed = _command_output(["npm", "config", "list", "--json"]) if shutil.which("npm") else ""
    return npm_build_config(json.loads(listed or "{}"))


# --- buildah ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Buildah:
    """buildah on a storage of our own (never the host's default /var/lib/containers)."""

    root: Path
    runroot: Path
    driver: str
    policy: Path

    def command(self, *args: str) -> list[str]:
        return [
            "buildah",
            f"--root={self.root}",
            f"--runroot={self.runroot}",
            f"--storage-driver={self.driver}",
            *args,
        ]

    def build(
        self,
        *,
        dockerfile: Path,
        context: Path,
        tag: str,
        iidfile: Path,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        volumes: Sequence[tuple[Path, str]] = (),
    ) -> list[str]:
        """``buildah bud``: chroot isolation (works as root without a container runtime), host network for pip,
        nothing pulled (FROM names images of our storage), one new layer per image."""
        return self.command(
            "bud",
            "--isolation=chroot",
            "--network=host",
            "--pull=never",
            "--layers=false",
            "--format=oci",
            f"--signature-policy={self.policy}",
            f"--file={dockerfile}",
            f"--tag={tag}",
            f"--iidfile={iidfile}",
            *(f"--build-arg={name}={value}" for name, value in sorted((build_args or {}).items())),
            *(f"--label={name}={value}" for name, value in sorted((labels or {}).items())),
            *(f"--volume={host}:{target}:ro" for host, target in volumes),
            str(context),
        )

    def push_archive(self, image: str, archive: Path, name: str) -> list[str]:
        """Export as an OCI archive whose index annotates the manifest with the full reference ``name``."""
        return self.command(
            "push", "--quiet", f"--signature-policy={self.policy}", image, f"oci-archive:{archive}:{name}"
        )

    def push_registry(self, image: str, destination: str, authfile: Path | None, cert_dir: Path) -> list[str]:
        """Push to a registry over TLS (``cert_dir`` holds its CA) with the credentials of ``authfile``
        (registry_authfile; never on the command line, where other users of the machine read it)."""
        return self.command(
            "push",
            "--quiet",
            f"--signature-policy={self.policy}",
            f"--cert-dir={cert_dir}",
            *([f"--authfile={authfile}"] if authfile else []),  # none: what `buildah login` stored
            image,
            f"docker://{destination}",
        )

    def pull_archive(self, archive: Path) -> list[str]:
        return self.command("pull", "--quiet", f"--signature-policy={self.policy}", f"oci-archive:{archive}")

    def tag(self, image: str, name: str) -> list[str]:
        return self.command("tag", image, name)

    def key_of(self, name: str) -> list[str]:
        return self.command(
            "inspect", "--type=image", f'--format={{{{index .OCIv1.Config.Labels "{KEY_LABEL}"}}}}', name
        )


# --- the plan ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuildStep:
    """One image to have: its name (in buildah's storage and in its archive), key, and how to build it."""

    name: str
    key: str
    dockerfile: str
    dockerfile_path: str
    parent: str | None
    """The step this one builds FROM (None: FROM scratch)."""
    exported: bool = True
    build_args: tuple[tuple[str, str], ...] = ()
    context: tuple[ContextEntry, ...] = ()
    rootfs: RootfsRecipe | None = None


def plan_images(repo_root: Path, machine: Machine, extra: Sequence[ImageSpec] = ()) -> list[BuildStep]:
    """Every image with its key, each after the image it builds on: the Debian-based ones, then IMAGES, then
    ``extra`` (e.g. a user's component: absolute paths; it may build FROM any of the project's images)."""
    steps: list[BuildStep] = []
    for rootfs in ROOTFS_IMAGES:
        text = (repo_root / rootfs.dockerfile).read_text()
        recipe = rootfs_recipe(rootfs, machine)
        key = rootfs_key(name=rootfs.name, dockerfile=text, recipe=recipe)
        name = f"{rootfs.name}:{key[:16]}" if rootfs.tagged_by_key else rootfs.name
        if resolve_from(text, {}) != "scratch":
            raise ImageBuildError(f"{rootfs.dockerfile} must build FROM scratch (its rootfs.tar)")
        steps.append(BuildStep(name, key, text, rootfs.dockerfile, None, rootfs.exported, rootfs=recipe))
    base = steps[ROOTFS_IMAGES.index(PYTHON_BASE)]
    keys = {step.name: step.key for step in steps}
    for spec in (*IMAGES, *extra):
        text = (repo_root / spec.dockerfile).read_text()
        build_args = {BASE_IMAGE_ARG: base.name} if BASE_IMAGE_ARG in global_args(text) else {}
        if NODE_BASE_IMAGE_ARG in global_args(text):
            build_args[NODE_BASE_IMAGE_ARG] = steps[ROOTFS_IMAGES.index(NODE_BASE)].name
        parent = resolve_from(text, build_args)
        if parent == "scratch":
            parent_key = None
        elif parent in keys:
            parent_key = keys[parent]
        else:
            raise ImageBuildError(
                f"{spec.dockerfile} builds FROM {parent}, which is not built here (and no registry is reachable); "
                f"use `ARG {BASE_IMAGE_ARG}` + `FROM ${{{BASE_IMAGE_ARG}}}` or one of: {', '.join(keys)}"
            )
        entries = collect_context(repo_root / spec.context, copy_sources(text))
        key = image_key(name=spec.name, dockerfile=text, entries=entries, build_args=build_args, base_key=parent_key)
        steps.append(
            BuildStep(
                spec.name,
                key,
                text,
                spec.dockerfile,
                None if parent == "scratch" else parent,
                build_args=tuple(sorted(build_args.items())),
                context=tuple(entries),
            )
        )
        keys[spec.name] = key
    return steps


def archive_name(name: str, key: str) -> str:
    """The archive's file name: the image reference made a file name, and the key."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + f"-{key[:32]}.oci.tar"


# --- the cache ---------------------------------------------------------------------------------------------------


def images_cache_dir(cache_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``<cache_dir>/images``; ``cache_dir`` defaults to ``${SCHEDEXEC_CACHE_DIR:-~/.cache/schedexec}``."""
    if cache_dir is None:
        environ = os.environ if environ is None else environ
        cache_dir = Path(environ.get(CACHE_DIR_ENV_VAR) or "~/.cache/schedexec").expanduser()
    return cache_dir / "images"


@dataclasses.dataclass(frozen=True)
class CacheLayout:
    root: Path

    @property
    def archives(self) -> Path:
        return self.root / "archives"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def archive(self, step: BuildStep) -> Path:
        return self.archives / archive_name(step.name, step.key)

    def buildah(self, driver: str) -> Buildah:
        storage = self.root / "buildah" / driver
        return Buildah(storage / "root", storage / "runroot", driver, storage / "policy.json")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise builds into this cache (parallel test workers, two shells)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def _run(command: Sequence[str], what: str, *, echo: str | None = None) -> str:
    """Run ``command``; its output is echoed (prefixed ``echo``) or returned; failures raise with its tail."""
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    captured: list[str] = []
    try:
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as error:
        raise ImageBuildError(f"{what}: cannot run {command[0]}: {error}") from error
    with process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            if echo is None:
                captured.append(line)
            else:
                print(f"  {echo}: {line}", end="", file=sys.stderr, flush=True)
        returncode = process.wait()
    if returncode != 0:
        raise ImageBuildError(
            f"{what} failed with exit code {returncode}: `{shlex.join(command)}`; last output:\n" + "\n".join(tail)
        )
    return "".join(captured)


class _Builder:
    """One build session under the cache lock."""

    def __init__(self, repo_root: Path, layout: CacheLayout, machine: Machine, steps: Sequence[BuildStep]) -> None:
        self.repo_root = repo_root
        self.layout = layout
        self.machine = machine
        self.steps = {step.name: step for step in steps}
        self.buildah = layout.buildah(os.environ.get(STORAGE_DRIVER_ENV_VAR) or DEFAULT_STORAGE_DRIVER)
        self.in_storage: set[str] = set()
        self.session = Path(tempfile.mkdtemp(prefix="session-", dir=self._tmp()))
        self.pip_dir = self.session / "pip"
        self.npm_dir = self.session / "npm"

    def _tmp(self) -> Path:
        self.layout.tmp.mkdir(parents=True, exist_ok=True)
        return self.layout.tmp

    def run(self) -> None:
        try:
            self._prepare()
            for step in self.steps.values():
                if not self.layout.archive(step).is_file():
                    self._build(step)
            self._prune()
        finally:
            shutil.rmtree(self.session, ignore_errors=True)

    def _prepare(self) -> None:
        missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
        if missing:
            raise ImageBuildError(f"missing {', '.join(missing)}: apt-get install -y buildah mmdebstrap")
        for path in (self.buildah.root, self.buildah.runroot, self.layout.archives):
            path.mkdir(parents=True, exist_ok=True)
        self.buildah.policy.write_text(json.dumps(_SIGNATURE_POLICY))
        for stale in [*self.layout.archives.glob(".tmp-*"), *self.layout.tmp.iterdir()]:
            if stale != self.session:  # left by an interrupted build (we hold the lock)
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        # Working containers of an interrupted build would hold their layers forever.
        _run(self.buildah.command("rm", "--all"), "removing leftover buildah containers")
        materialize_pip_config(machine_pip_config(), self.pip_dir)
        materialize_pip_config(machine_npm_config(), self.npm_dir, "npmrc")

    def _build(self, step: BuildStep) -> None:
        if step.parent is not None:
            self._ensure_in_storage(self.steps[step.parent])
        started = time.monotonic()
        _log(f"building {step.name} from {step.dockerfile_path} (key {step.key[:12]}) ...")
        work = Path(tempfile.mkdtemp(prefix="build-", dir=self.session))
        context = work / "context"
        context.mkdir()
        if step.rootfs is not None:
            self._make_rootfs(step.rootfs, work, context / "rootfs.tar")
            volumes: list[tuple[Path, str]] = []
        else:
            stage_context(step.context, context)
            volumes = [(self.pip_dir, PIP_CONFIG_MOUNT)]
            if NODE_BASE_IMAGE_ARG in dict(step.build_args):  # the node base keeps the mount's target
                volumes.append((self.npm_dir, NPM_CONFIG_MOUNT))
        dockerfile = work / "Dockerfile"
        dockerfile.write_text(step.dockerfile)
        iidfile = work / "image-id"
        command = self.buildah.build(
            dockerfile=dockerfile,
            context=context,
            tag=step.name,
            iidfile=iidfile,
            build_args=dict(step.build_args),
            labels={KEY_LABEL: step.key},
            volumes=volumes,
        )
        _run(command, f"building {step.name} ({step.dockerfile_path})", echo="buildah")
        image_id = iidfile.read_text().strip()
        self.in_storage.add(step.name)
        archive = self.layout.archive(step)
        partial = archive.with_name(f".tmp-{os.getpid()}-{archive.name}")
        partial.unlink(missing_ok=True)
        _run(self.buildah.push_archive(image_id, partial, step.name), f"exporting {step.name} to {partial}")
        os.replace(partial, archive)
        shutil.rmtree(work, ignore_errors=True)
        _log(f"built {step.name} in {time.monotonic() - started:.0f}s: {archive}")

    def _make_rootfs(self, recipe: RootfsRecipe, work: Path, target: Path) -> None:
        sources = write_source_files(recipe.sources, work)
        mode = "root" if os.geteuid() == 0 else "unshare"
        command = mmdebstrap_command(
            recipe, target=target, source_files=sources, apt_options=self.machine.apt_options, mode=mode
        )
        # mmdebstrap's temporary root filesystem goes next to the tarball, not to a small /tmp.
        with _environment(TMPDIR=str(work)):
            _run(command, f"mmdebstrap ({recipe.suite}, {','.join(recipe.packages)})", echo="mmdebstrap")

    def _ensure_in_storage(self, step: BuildStep) -> None:
        """Have ``step``'s image in buildah's storage: already there with its key, or loaded from its archive."""
        if step.name in self.in_storage:
            return
        found = subprocess.run(self.buildah.key_of(step.name), capture_output=True, text=True, check=False)
        if found.returncode != 0 or found.stdout.strip() != step.key:
            archive = self.layout.archive(step)
            _log(f"loading {step.name} from {archive} ...")
            image_id = _run(self.buildah.pull_archive(archive), f"loading {archive}").strip().splitlines()[-1]
            _run(self.buildah.tag(image_id, step.name), f"tagging {image_id} as {step.name}")
        self.in_storage.add(step.name)

    def labelled(self, image: str, name: str, labels: Mapping[str, str]) -> str:
        """``image`` committed as ``name`` with ``labels`` added to its configuration (no new layer)."""
        container = _run(self.buildah.command("from", "--pull=never", image), f"opening {image}").split()[-1]
        try:
            label_args = [f"--label={key}={value}" for key, value in sorted(labels.items())]
            _run(self.buildah.command("config", *label_args, container), f"labelling {name}")
            _run(self.buildah.command("commit", "--quiet", "--format=oci", container, name), f"committing {name}")
        finally:
            _run(self.buildah.command("rm", container), f"removing the working container of {name}")
        return name

    def _prune(self) -> None:
        """Drop superseded images from storage, and all but the newest three archives of each image.

        Best effort: the builds succeeded, a leftover only costs disk space.
        """
        try:
            _run(self.buildah.command("rmi", "--prune"), "pruning dangling images")
            listed = _run(self.buildah.command("images", "--format={{.Name}}:{{.Tag}}"), "listing images").split()
            prefix = f"{PYTHON_BASE_REPOSITORY}:"
            for stale in [name for name in listed if name.startswith(prefix) and name not in self.steps]:
                _run(self.buildah.command("rmi", stale), f"removing the superseded base {stale}")
        except ImageBuildError as error:
            _log(f"pruning buildah's storage: {error}")
        current = {archive_name(step.name, step.key) for step in self.steps.values()}
        by_image: dict[str, list[Path]] = collections.defaultdict(list)
        for path in self.layout.archives.glob("*.oci.tar"):
            by_image[path.name.rsplit("-", 1)[0]].append(path)
        for paths in by_image.values():
            paths.sort(key=lambda path: path.stat().st_mtime, reverse=True)
            for old in paths[3:]:
                if old.name not in current:
                    old.unlink(missing_ok=True)


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_images(
    repo_root: Path, cache_dir: Path | None = None, extra: Sequence[ImageSpec] = ()
) -> list[ImageArchive]:
    """The archives of the project's images (runner, operator, examples, test component) and the node's pause image.

    Builds what the cache lacks (minutes, cold); a warm call only hashes.
    ``cache_dir`` is the schedexec cache root (default
    ``${SCHEDEXEC_CACHE_DIR:-~/.cache/schedexec}``); images live in its
    ``images/`` directory.
    """
    repo_root = repo_root.resolve()
    layout = CacheLayout(images_cache_dir(cache_dir))
    machine = read_machine()
    steps = plan_images(repo_root, machine, extra)
    archives = [ImageArchive(step.name, layout.archive(step), step.key) for step in steps if step.exported]
    if all(image.archive.is_file() for image in archives):
        return archives
    with layout.lock():  # another caller may have built them meanwhile: the builder skips what exists
        _Builder(repo_root, layout, machine, steps).run()
    return archives


def registry_authfile(directory: Path, destination: str, creds: str) -> Path:
    """A containers-auth.json (mode 0600) in ``directory`` giving ``user:password`` for the registry of the image
    reference ``destination``."""
    host = destination.split("/", 1)[0]
    path = directory / "auth.json"
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(creds.encode()).decode()}}}))
    return path


def push_images(
    repo_root: Path,
    destination: Callable[[str], str],
    creds: str,
    cert_dir: Path,
    cache_dir: Path | None = None,
    only: Collection[str] | None = None,
    extra: Sequence[ImageSpec] = (),
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """Build what the cache lacks, then push every registry-backed image (all but the node's pause image), or
    those named in ``only``; with ``labels``, each image is first committed with them (a release's OCI labels:
    same layers, new configuration).

    ``destination`` maps an image's name (``ghcr.io/schedexec/runner:0.1.0``) to where it goes; blobs the
    registry has are not sent again, so a warm push takes seconds. The pushed references, in build order.
    """
    repo_root = repo_root.resolve()
    ensure_images(repo_root, cache_dir, extra)
    layout = CacheLayout(images_cache_dir(cache_dir))
    steps = plan_images(repo_root, read_machine(), extra)
    pushed: list[str] = []
    with layout.lock():
        builder = _Builder(repo_root, layout, read_machine(), steps)
        try:
            # the archives may come from a restored cache whose buildah storage (and policy) is empty
            builder.buildah.policy.parent.mkdir(parents=True, exist_ok=True)
            builder.buildah.policy.write_text(json.dumps(_SIGNATURE_POLICY))
            for step in steps:
                if not step.exported or step.name == PAUSE_IMAGE or (only is not None and step.name not in only):
                    continue
                builder._ensure_in_storage(step)
                target = destination(step.name)
                started = time.monotonic()
                source = builder.labelled(step.name, target, labels) if labels else step.name
                authfile = registry_authfile(builder.session, target, creds) if creds else None
                _run(builder.buildah.push_registry(source, target, authfile, cert_dir), f"pushing {target}")
                _log(f"pushed {target} in {time.monotonic() - started:.1f}s")
                pushed.append(target)
        finally:
            shutil.rmtree(builder.session, ignore_errors=True)
    return pushed


# --- command line --------------------------------------------------------------------------------------------------


def default_repo_root() -> Path:
    here = Path(__file__).resolve().parents[3]
    return here if (here / "runner-image").is_dir() else Path.cwd()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schedexec_devcluster.images",
        description="Build (or find in the cache) the project's images offline; print `<name> <archive>` lines.",
    )
    parser.add_argument("--repo-root", type=Path, default=None, help="the schedexec checkout (default: this one)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"cache root (default ${CACHE_DIR_ENV_VAR} or ~/.cache/schedexec)"
    )
    parser.add_argument("--keys", action="store_true", help="print each image's key and cache state; build nothing")
    args = parser.parse_args(argv)
    repo_root = (args.repo_root or default_repo_root()).resolve()
    started = time.monotonic()
    try:
        if args.keys:
            layout = CacheLayout(images_cache_dir(args.cache_dir))
            for step in plan_images(repo_root, read_machine()):
                state = "cached" if layout.archive(step).is_file() else "missing"
                print(f"{step.name} {step.key} {state}")
            return 0
        archives = ensure_images(repo_root, args.cache_dir)
    except ImageBuildError as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    for image in archives:
        print(f"{image.name} {image.archive}")
    _log(f"{len(archives)} images ready in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
