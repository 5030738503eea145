"""Locate, or build from source, the binaries the local control plane runs.

Why this exists: tests and local development need a real kube-apiserver,
etcd and kube-controller-manager (the Job, garbage-collector and
ServiceAccount controllers are part of what schedexec relies on), but no
container runtime or kind cluster is available everywhere. envtest-style
binaries are reused when the environment already provides them; otherwise
they are compiled once with ``go build`` from the pinned wrapper modules in
``hack/k8s-build`` and cached per Kubernetes version.

Lookup order for each binary (first hit wins):

1. ``TEST_ASSET_ETCD`` / ``TEST_ASSET_KUBE_APISERVER`` / ``TEST_ASSET_KUBECTL``
   (envtest conventions; ``TEST_ASSET_KUBE_CONTROLLER_MANAGER`` is accepted
   too). A variable that is set must point at an executable: a typo there is
   an error, not a silent fallback.
2. ``$KUBEBUILDER_ASSETS/<name>``. envtest assets do not ship
   kube-controller-manager, so it is looked up next to the kube-apiserver
   that was found instead.
3. The cache: ``${SCHEDEXEC_CACHE_DIR:-~/.cache/schedexec}/k8s-<version>/bin``.

The real node (node.py) needs more: kubelet, kube-scheduler and kube-proxy
and cri-reset (hack/k8s-build/kubernetes/cri-reset: removes every pod
sandbox through CRI at shutdown), same wrapper module and cache as the
control plane, containerd 2.x (its own wrapper module,
``containerd-<version>/bin``) and runc (``go install``, the version
containerd is tested with), all built from the Go module proxy. The CNI
plugins come from Debian's ``containernetworking-plugins``: maintained with
security fixes, and nothing in them is version-sensitive for this node.
``ensure_node_binaries`` finds or builds them; ``ensure_registry`` the node's
image registry (CNCF distribution, registry.py), also from the module proxy.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from schedexec_devcluster.node import NodeBinaries

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"

ETCD = "etcd"
KUBE_APISERVER = "kube-apiserver"
KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
KUBECTL = "kubectl"
COMPONENTS: tuple[str, ...] = (ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBECTL)

#: envtest's per-binary override variables (plus one for the controller manager).
ASSET_ENV_VARS: Mapping[str, str] = {
    ETCD: "TEST_ASSET_ETCD",
    KUBE_APISERVER: "TEST_ASSET_KUBE_APISERVER",
    KUBE_CONTROLLER_MANAGER: "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
    KUBECTL: "TEST_ASSET_KUBECTL",
}
ASSETS_DIR_ENV_VAR = "KUBEBUILDER_ASSETS"
CACHE_DIR_ENV_VAR = "SCHEDEXEC_CACHE_DIR"

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_MODULES_DIR = REPO_ROOT / "hack" / "k8s-build"

_FAILURE_TAIL_LINES = 30


class BinariesUnavailable(RuntimeError):
    """Raised when a required binary can be neither found nor built."""


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane binaries; ``None`` for ones not found."""

    etcd: Path | None = None
    kube_apiserver: Path | None = None
    kube_controller_manager: Path | None = None
    kubectl: Path | None = None

    def get(self, component: str) -> Path | None:
        """Path of ``component`` (e.g. ``"kube-apiserver"``), or ``None``."""
        value: Path | None = getattr(self, _field_name(component))
        return value

    def missing(self) -> list[str]:
        """Names of the components that were not found, in COMPONENTS order."""
        return [c for c in COMPONENTS if self.get(c) is None]

    def require(self, component: str) -> Path:
        """Path of ``component``; raises BinariesUnavailable if it is missing."""
        path = self.get(component)
        if path is None:
            raise BinariesUnavailable(f"{component} is not available; run `python -m schedexec_devcluster binaries`")
        return path


@dataclasses.dataclass(frozen=True)
class BuildGroup:
    """Binaries built together by one ``go build`` in one wrapper module."""

    module_dir: Path
    packages: Mapping[str, str]  # component -> Go package path
    ldflags: tuple[str, ...]
    tags: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


_KUBERNETES_LDFLAGS = (
    "-s",
    "-w",
    f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
    "-X k8s.io/component-base/version.gitMajor=" + KUBERNETES_VERSION[1:].split(".")[0],
    "-X k8s.io/component-base/version.gitMinor=" + KUBERNETES_VERSION.split(".")[1],
    f"-X k8s.io/client-go/pkg/version.gitVersion={KUBERNETES_VERSION}",
)
KUBERNETES_BUILD = BuildGroup(
    module_dir=BUILD_MODULES_DIR / "kubernetes",
    packages={
        KUBE_APISERVER: "k8s.io/kubernetes/cmd/kube-apiserver",
        KUBE_CONTROLLER_MANAGER: "k8s.io/kubernetes/cmd/kube-controller-manager",
        KUBECTL: "k8s.io/kubernetes/cmd/kubectl",
    },
    ldflags=_KUBERNETES_LDFLAGS,
)
ETCD_BUILD = BuildGroup(
    module_dir=BUILD_MODULES_DIR / "etcd",
    packages={ETCD: "go.etcd.io/etcd/server/v3"},
    ldflags=("-s", "-w"),
)
BUILD_GROUPS: tuple[BuildGroup, ...] = (KUBERNETES_BUILD, ETCD_BUILD)


# --------------------------------------------------------------------------
# Lookup (pure apart from filesystem checks)
# --------------------------------------------------------------------------


def _field_name(component: str) -> str:
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")
    return component.replace("-", "_")


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def cache_bin_dir(env: Mapping[str, str] | None = None) -> Path:
    """Directory where built binaries are cached for KUBERNETES_VERSION."""
    root = _environ(env).get(CACHE_DIR_ENV_VAR) or "~/.cache/schedexec"
    return Path(root).expanduser() / f"k8s-{KUBERNETES_VERSION}" / "bin"


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def search_path(component: str, env: Mapping[str, str] | None = None, apiserver: Path | None = None) -> list[Path]:
    """Candidate locations for ``component`` after its TEST_ASSET_* variable.

    ``apiserver`` is the kube-apiserver already found; kube-controller-manager
    is searched next to it because envtest assets do not contain it.
    """
    environ = _environ(env)
    candidates: list[Path] = []
    if component == KUBE_CONTROLLER_MANAGER:
        if apiserver is not None:
            candidates.append(apiserver.parent / component)
    elif assets := environ.get(ASSETS_DIR_ENV_VAR):
        candidates.append(Path(assets) / component)
    candidates.append(cache_bin_dir(environ) / component)
    return candidates


def _explicit_override(component: str, environ: Mapping[str, str]) -> Path | None:
    variable = ASSET_ENV_VARS[component]
    value = environ.get(variable)
    if not value:
        return None
    path = Path(value)
    if not is_executable(path):
        raise BinariesUnavailable(f"{variable}={value} is set but is not an executable file")
    return path


def find_binary(component: str, env: Mapping[str, str] | None = None, apiserver: Path | None = None) -> Path | None:
    """Locate one component following the module's lookup order."""
    environ = _environ(env)
    explicit = _explicit_override(component, environ)
    if explicit is not None:
        return explicit
    return next((p for p in search_path(component, environ, apiserver) if is_executable(p)), None)


def find_binaries(env: Mapping[str, str] | None = None) -> Binaries:
    """Locate every component; missing ones are ``None`` (nothing is built)."""
    environ = _environ(env)
    apiserver = find_binary(KUBE_APISERVER, environ)
    return Binaries(
        etcd=find_binary(ETCD, environ),
        kube_apiserver=apiserver,
        kube_controller_manager=find_binary(KUBE_CONTROLLER_MANAGER, environ, apiserver),
        kubectl=find_binary(KUBECTL, environ),
    )


def describe_search(component: str, env: Mapping[str, str] | None = None) -> str:
    """Human-readable list of where ``component`` was looked for."""
    environ = _environ(env)
    apiserver = find_binary(KUBE_APISERVER, environ) if component == KUBE_CONTROLLER_MANAGER else None
    places = [f"${ASSET_ENV_VARS[component]}"] + [str(p) for p in search_path(component, environ, apiserver)]
    return f"{component} (looked in: {', '.join(places)})"


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


def build_command(group: BuildGroup, components: Sequence[str], out_dir: Path) -> list[str]:
    """The ``go build`` invocation producing ``components`` of ``group`` in ``out_dir``.

    A single package gets an explicit output file name (etcd's main package is
    the ``server/v3`` module root, which go would name ``server``); several
    packages are written into the directory under their command names.
    """
    if not components:
        raise ValueError("nothing to build")
    packages = [group.packages[c] for c in components]
    # A trailing separator makes `go build -o` treat the target as a directory.
    output = str(out_dir / components[0]) if len(components) == 1 else f"{out_dir}{os.sep}"
    tags = ["-tags", ",".join(group.tags)] if group.tags else []
    return [
        "go",
        "build",
        "-trimpath",
        *tags,
        "-ldflags",
        " ".join(group.ldflags),
        "-o",
        output,
        *packages,
    ]


def build_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for ``go build``: never let a surrounding go.work interfere."""
    environ = dict(_environ(base))
    environ["GOWORK"] = "off"
    return environ


def _log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def _run_build(command: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> None:
    """Run ``command``, echoing its output; raise with the output tail on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=_FAILURE_TAIL_LINES)
    with subprocess.Popen(
        command,
        cwd=cwd,
        env={**build_environment(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            print(f"  go: {line}", end="", file=sys.stderr, flush=True)
        returncode = process.wait()
    if returncode != 0:
        raise BinariesUnavailable(
            f"`{' '.join(command)}` (in {cwd}) failed with exit code {returncode}; last output:\n" + "\n".join(tail)
        )


@contextlib.contextmanager
def _build_lock(bin_dir: Path) -> Iterator[None]:
    """Serialise builds into one cache dir (e.g. parallel pytest workers)."""
    bin_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(bin_dir.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_group(group: BuildGroup, components: Sequence[str], bin_dir: Path) -> None:
    """Build into a temp dir next to ``bin_dir``, then rename each binary in.

    os.replace within one filesystem is atomic, so a concurrent reader sees
    either no binary or a complete one, never a half-written file.
    """
    if not (group.module_dir / "go.mod").is_file():
        raise BinariesUnavailable(
            f"cannot build {', '.join(components)}: wrapper module {group.module_dir} not found "
            "(building needs a source checkout of the schedexec repository)"
        )
    bin_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=bin_dir.parent))
    try:
        command = build_command(group, components, staging)
        _log(f"building {', '.join(components)} with go (can take 10+ minutes on a cold cache) ...")
        started = time.monotonic()
        _run_build(command, group.module_dir, group.env)
        for component in components:
            os.replace(staging / component, bin_dir / component)
        _log(f"built {', '.join(components)} in {time.monotonic() - started:.0f}s into {bin_dir}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _missing_error(missing: Sequence[str], reason: str) -> BinariesUnavailable:
    lines = [f"missing control-plane binaries: {reason}"]
    lines += [f"  - {describe_search(c)}" for c in missing]
    return BinariesUnavailable("\n".join(lines))


def ensure_binaries(build: bool = True) -> Binaries:
    """Return all binaries, building the missing ones into the cache if allowed."""
    found = find_binaries()
    if not found.missing():
        return found
    if not build:
        raise _missing_error(found.missing(), "building is disabled")
    if shutil.which("go") is None:
        raise _missing_error(found.missing(), "cannot build them because `go` is not on PATH (install Go >= 1.26)")
    bin_dir = cache_bin_dir()
    with _build_lock(bin_dir):
        found = find_binaries()  # another process may have built them meanwhile
        for group in BUILD_GROUPS:
            wanted = [c for c in group.packages if c in found.missing()]
            if wanted:
                _build_group(group, wanted, bin_dir)
    found = find_binaries()
    if found.missing():
        raise _missing_error(found.missing(), "still not found after building")
    return found


HELM_VERSION = "v3.22.0"
"""Helm, for the chart checks (helm lint, helm template); built like the rest, from the module proxy."""


def ensure_helm(build: bool = True) -> Path:
    """`$HELM`, else the cached helm, else `go install`ed into the cache."""
    explicit = os.environ.get("HELM")
    if explicit:
        if not is_executable(Path(explicit)):
            raise BinariesUnavailable(f"HELM={explicit} is not an executable file")
        return Path(explicit)
    bin_dir = cache_bin_dir().parent.parent / f"helm-{HELM_VERSION}"
    helm = bin_dir / "helm"
    if is_executable(helm):
        return helm
    if not build:
        raise BinariesUnavailable(f"helm is not in {bin_dir} and building it was not allowed")
    if shutil.which("go") is None:
        raise BinariesUnavailable("helm is missing and `go` is not on PATH to build it")
    bin_dir.mkdir(parents=True, exist_ok=True)
    _log(f"building helm {HELM_VERSION} with go into {bin_dir} ...")
    environ = build_environment()
    environ["GOBIN"] = str(bin_dir)
    done = subprocess.run(
        ["go", "install", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"], env=environ, capture_output=True, text=True
    )
    if done.returncode != 0 or not is_executable(helm):
        raise BinariesUnavailable(
            f"`go install helm.sh/helm/v3/cmd/helm@{HELM_VERSION}` failed:\n{done.stderr[-2000:]}"
        )
    return helm


REGISTRY_VERSION = "v3.1.2"
"""CNCF distribution's registry (the real node's image registry, registry.py); from the module proxy."""
REGISTRY_PACKAGE = f"github.com/distribution/distribution/v3/cmd/registry@{REGISTRY_VERSION}"


def registry_path() -> Path:
    return _cache_root() / f"registry-{REGISTRY_VERSION}" / "bin" / "registry"


def ensure_registry(build: bool = True) -> Path:
    """The registry binary from the cache, else ``go install``ed into it (about 4 minutes cold on 2 cores)."""
    registry = registry_path()
    if is_executable(registry):
        return registry
    if not build:
        raise BinariesUnavailable(f"the registry is not in {registry.parent} and building it was not allowed")
    if shutil.which("go") is None:
        raise BinariesUnavailable("the registry is missing and `go` is not on PATH to build it")
    with _build_lock(registry.parent):
        if not is_executable(registry):
            _go_install(REGISTRY_PACKAGE, registry.parent, (), {"CGO_ENABLED": "0"})
    if not is_executable(registry):
        raise BinariesUnavailable(f"`go install {REGISTRY_PACKAGE}` left no {registry}")
    return registry


# --------------------------------------------------------------------------
# The real node's binaries
# --------------------------------------------------------------------------

KUBELET = "kubelet"
KUBE_SCHEDULER = "kube-scheduler"
KUBE_PROXY = "kube-proxy"
CRI_RESET = "cri-reset"
NODE_KUBERNETES_BUILD = BuildGroup(
    module_dir=BUILD_MODULES_DIR / "kubernetes",
    packages={
        KUBELET: "k8s.io/kubernetes/cmd/kubelet",
        KUBE_SCHEDULER: "k8s.io/kubernetes/cmd/kube-scheduler",
        KUBE_PROXY: "k8s.io/kubernetes/cmd/kube-proxy",
        CRI_RESET: "schedexec.io/hack/k8s-build/kubernetes/cri-reset",
    },
    ldflags=_KUBERNETES_LDFLAGS,
)

CONTAINERD_VERSION = "v2.4.2"
CONTAINERD_BUILD = BuildGroup(
    module_dir=BUILD_MODULES_DIR / "containerd",
    packages={
        "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
        "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
        "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
    },
    ldflags=(
        "-s",
        "-w",
        f"-X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",
        "-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2",
    ),
    tags=("urfave_cli_no_docs", "no_btrfs"),  # btrfs is the only part that needs cgo: static binaries without it
    env={"CGO_ENABLED": "0"},
)
RUNC_VERSION = "v1.5.2"
"""What containerd v2.4.2 is tested with (its script/setup/runc-version); Debian 12 ships 1.1.5."""
RUNC_PACKAGE = f"github.com/opencontainers/runc@{RUNC_VERSION}"
RUNC_TAGS = ("seccomp", "urfave_cli_no_docs")  # not libpathrs: a Rust library Debian does not package
DEBIAN_CNI_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


def _cache_root() -> Path:
    return cache_bin_dir().parent.parent


def containerd_bin_dir() -> Path:
    return _cache_root() / f"containerd-{CONTAINERD_VERSION}" / "bin"


def runc_path() -> Path:
    return _cache_root() / f"runc-{RUNC_VERSION}" / "bin" / "runc"


def find_node_binaries() -> NodeBinaries | None:
    """The node's binaries if every one is present (nothing is built)."""
    k8s, containerd = cache_bin_dir(), containerd_bin_dir()
    found = NodeBinaries(
        kubelet=k8s / KUBELET,
        kube_scheduler=k8s / KUBE_SCHEDULER,
        kube_proxy=k8s / KUBE_PROXY,
        containerd=containerd / "containerd",
        containerd_shim=containerd / "containerd-shim-runc-v2",
        ctr=containerd / "ctr",
        runc=runc_path(),
        cri_reset=k8s / CRI_RESET,
        cni_bin_dir=DEBIAN_CNI_DIR,
    )
    executables = [p for p in dataclasses.astuple(found) if p != DEBIAN_CNI_DIR]
    plugins = all(is_executable(DEBIAN_CNI_DIR / plugin) for plugin in CNI_PLUGINS)
    present = all(is_executable(p) for p in executables) and plugins
    return found if present else None


def _go_install(package: str, bin_dir: Path, tags: Sequence[str], env: Mapping[str, str]) -> None:
    """``go install package@version`` into ``bin_dir`` (modules without replace directives need no wrapper)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tag_args = ["-tags", ",".join(tags)] if tags else []
    command = ["go", "install", "-trimpath", *tag_args, "-ldflags", "-s -w", package]
    _log(f"building {package} with go into {bin_dir} ...")
    started = time.monotonic()
    done = subprocess.run(
        command, env={**build_environment(), **env, "GOBIN": str(bin_dir)}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BinariesUnavailable(f"`{' '.join(command)}` failed:\n{done.stderr[-2000:]}")
    _log(f"built {package} in {time.monotonic() - started:.0f}s")


def ensure_node_binaries(build: bool = True) -> NodeBinaries:
    """The real node's binaries, building the missing Go ones into the cache if allowed.

    The CNI plugins are a Debian package, and runc links Debian's
    libseccomp: if they are missing, the error says which to install
    (``make host-packages`` does).
    """
    found = find_node_binaries()
    if found is not None:
        return found
    problems = []
    if not Path("/usr/include/seccomp.h").is_file():
        problems.append("libseccomp's headers are missing (runc's seccomp support): apt-get install libseccomp-dev")
    if not is_executable(DEBIAN_CNI_DIR / "bridge"):
        problems.append(f"{DEBIAN_CNI_DIR}/bridge is missing: apt-get install containernetworking-plugins")
    if problems:
        raise BinariesUnavailable("the real node needs Debian packages:\n  - " + "\n  - ".join(problems))
    if not build:
        raise BinariesUnavailable("the real node's binaries are not all built and building was not allowed")
    if shutil.which("go") is None:
        raise BinariesUnavailable("the real node's binaries are missing and `go` is not on PATH to build them")
    k8s = cache_bin_dir()
    with _build_lock(k8s):
        missing = [c for c in NODE_KUBERNETES_BUILD.packages if not is_executable(k8s / c)]
        if missing:
            _build_group(NODE_KUBERNETES_BUILD, missing, k8s)
        containerd = containerd_bin_dir()
        missing = [c for c in CONTAINERD_BUILD.packages if not is_executable(containerd / c)]
        if missing:
            _build_group(CONTAINERD_BUILD, missing, containerd)
        if not is_executable(runc_path()):
            _go_install(RUNC_PACKAGE, runc_path().parent, RUNC_TAGS, {"CGO_ENABLED": "1"})
    found = find_node_binaries()
    if found is None:
        raise BinariesUnavailable("the real node's binaries are still incomplete after building")
    return found
