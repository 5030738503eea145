"""The offline image builds' pure parts: Dockerfile reading, keys, apt and pip settings, commands."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from schedexec_devcluster import images
from schedexec_devcluster.images import ContextEntry, ImageBuildError, Machine

REPO = Path(__file__).resolve().parents[2]

# Fictional mirrors: the real ones are read from the machine at build time.
DEB822 = """\
Types: deb deb-src
# a comment
URIs: http://mirror.example.invalid/debian
Suites: bookworm bookworm-updates trixie
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF...
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://disabled.example.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: https://vendor.example.invalid/apt
Suites: nodistro
Components: main
"""
ONE_LINE = """\
# deb http://commented.example.invalid/debian bookworm main
deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] http://mirror.example.invalid/debian bookworm main  # trailing
deb-src http://mirror.example.invalid/debian bookworm main
deb http://vendor.example.invalid/apt cloud-sdk-bookworm main
deb http://mirror.example.invalid/debian   bookworm-backports   main non-free
"""


def machine(**overrides: object) -> Machine:
    fields: dict[str, object] = {
        "codename": "bookworm",
        "architecture": "amd64",
        "apt_source_files": (("/etc/apt/sources.list.d/debian.sources", DEB822),),
        "apt_options": ('Acquire::Check-Valid-Until "false";',),
    }
    fields.update(overrides)
    return Machine(**fields)  # type: ignore[arg-type]


# --- Dockerfiles -----------------------------------------------------------------------------------------------


def test_the_repositorys_dockerfiles_copy_what_their_contexts_hold() -> None:
    def sources(path: str) -> list[str]:
        return images.copy_sources((REPO / path).read_text())

    assert sources("Dockerfile") == ["runner-image", "pyproject.toml", "README.md", "operator"]
    assert sources("runner-image/Dockerfile") == ["pyproject.toml", "schedexec_runner"]
    for name in images.EXAMPLES:
        assert sources(f"examples/{name}/Dockerfile") == ["__init__.py", "component.py"]
    assert sources("hack/images/python-base/Dockerfile") == ["rootfs.tar"]
    assert sources("hack/images/pause/Dockerfile") == ["rootfs.tar"]  # the other COPYs are --from the stage


def test_python_dockerfiles_take_their_base_from_a_build_arg_defaulting_to_python_slim() -> None:
    for path in ("Dockerfile", "runner-image/Dockerfile"):
        text = (REPO / path).read_text()
        assert images.global_args(text) == {"BASE_IMAGE": "python:3.11-slim"}
        assert images.resolve_from(text, {}) == "python:3.11-slim"  # plain `docker build` is unchanged
        assert images.resolve_from(text, {"BASE_IMAGE": "localhost/b:1"}) == "localhost/b:1"
    for name in images.EXAMPLES:
        text = (REPO / f"examples/{name}/Dockerfile").read_text()
        assert images.resolve_from(text, {"BASE_IMAGE": "x"}) == f"ghcr.io/schedexec/runner:{images.VERSION}"


def test_the_runner_compiles_the_interpreters_own_library_not_a_fixed_path() -> None:
    text = (REPO / "runner-image/Dockerfile").read_text()
    assert "/usr/local/lib/python3.11" not in "".join(i.args for i in images.parse_dockerfile(text))
    assert "sysconfig.get_path" in text


def test_parse_dockerfile_joins_continuations_and_drops_comments() -> None:
    text = "# c\nFROM a AS b\n\nRUN one \\\n  # inner comment\n  two \\\n\n  three\nenv A=1\n"
    assert images.parse_dockerfile(text) == [
        images.Instruction("FROM", "a AS b"),
        images.Instruction("RUN", "one two three"),
        images.Instruction("ENV", "A=1"),
    ]


def test_copy_sources_reads_flags_json_form_and_skips_other_stages() -> None:
    text = (
        "FROM x\n"
        "COPY --chown=1:1 a b /dst/\n"
        'COPY ["with space", "/d"]\n'
        "COPY --from=build /out /out\n"
        "ADD --chmod=644 a /again\n"
    )
    assert images.copy_sources(text) == ["a", "b", "with space"]
    with pytest.raises(ImageBuildError, match="URL"):
        images.copy_sources("FROM x\nADD https://example.invalid/f /f\n")
    with pytest.raises(ImageBuildError, match="destination"):
        images.copy_sources("FROM x\nCOPY onlyone\n")


def test_resolve_from_follows_stages_and_substitutes_variables() -> None:
    text = "ARG REG=r.invalid\nARG TAG\nFROM ${REG}/img:${TAG:-1} AS build\nFROM build\n"
    assert images.resolve_from(text, {}) == "r.invalid/img:1"
    assert images.resolve_from(text, {"TAG": "2", "UNDECLARED": "x"}) == "r.invalid/img:2"
    assert images.resolve_from("FROM scratch AS s\nFROM scratch\n", {}) == "scratch"
    assert images.substitute("$A-${B:+set}-${C:-none}", {"A": "a", "B": "b"}) == "a-set-none"
    with pytest.raises(ImageBuildError):
        images.resolve_from("RUN x\n", {})


# --- contexts and keys ------------------------------------------------------------------------------------------


def test_collect_context_takes_named_paths_without_caches(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "pkg" / "m.py").write_text("print(1)\n")
    (tmp_path / "pkg" / "pkg.egg-info").mkdir()
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "unrelated.txt").write_text("not copied")
    entries = images.collect_context(tmp_path, ["pkg", "run.sh"])
    assert [(e.path, e.kind) for e in entries] == [("pkg", "dir"), ("pkg/m.py", "file"), ("run.sh", "file")]
    assert entries[2].mode == 0o755
    with pytest.raises(ImageBuildError, match="not in the build context"):
        images.collect_context(tmp_path, ["missing"])
    with pytest.raises(ImageBuildError, match="leaves"):
        images.collect_context(tmp_path, ["../etc"])

    staged = tmp_path / "staged"
    images.stage_context(entries, staged)
    assert (staged / "pkg" / "m.py").read_text() == "print(1)\n"
    assert (staged / "run.sh").stat().st_mode & 0o777 == 0o755
    assert not (staged / "unrelated.txt").exists()


def test_image_key_depends_on_everything_that_makes_the_image_and_nothing_else() -> None:
    a = ContextEntry("a.py", "file", 0o644, b"1")
    b = ContextEntry("b.py", "file", 0o644, b"2")
    args = {"name": "n:1", "dockerfile": "FROM x\n", "build_args": {"BASE_IMAGE": "x"}, "base_key": "k"}
    key = images.image_key(entries=[a, b], **args)  # type: ignore[arg-type]
    assert key == images.image_key(entries=[b, a], **args)  # type: ignore[arg-type]
    variants = [
        images.image_key(entries=[a, ContextEntry("b.py", "file", 0o644, b"3")], **args),  # type: ignore[arg-type]
        images.image_key(entries=[a, ContextEntry("b.py", "file", 0o755, b"2")], **args),  # type: ignore[arg-type]
        images.image_key(entries=[a], **args),  # type: ignore[arg-type]
        images.image_key(entries=[a, b], **{**args, "dockerfile": "FROM y\n"}),  # type: ignore[arg-type]
        images.image_key(entries=[a, b], **{**args, "base_key": "other"}),  # type: ignore[arg-type]
        images.image_key(entries=[a, b], **{**args, "build_args": {"BASE_IMAGE": "y"}}),  # type: ignore[arg-type]
        images.image_key(entries=[a, b], **{**args, "name": "n:2"}),  # type: ignore[arg-type]
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_the_plan_builds_each_image_after_its_base_with_the_offline_base(tmp_path: Path) -> None:
    steps = images.plan_images(REPO, machine())
    names = [step.name for step in steps]
    base = steps[0]
    assert base.name.startswith(images.PYTHON_BASE_REPOSITORY + ":") and not base.exported
    node_base = names[2]  # the elastic.io components' base (issue 29), key-tagged as the python base
    assert node_base.startswith(images.NODE_BASE_REPOSITORY + ":") and not steps[2].exported
    assert names[1:] == [images.PAUSE_IMAGE, node_base, *(spec.name for spec in images.IMAGES)]
    by_name = {step.name: step for step in steps}
    runner = by_name[f"ghcr.io/schedexec/runner:{images.VERSION}"]
    operator = by_name[f"ghcr.io/schedexec/operator:{images.VERSION}"]
    assert runner.parent == operator.parent == base.name
    assert dict(runner.build_args) == {"BASE_IMAGE": base.name}
    for name in images.EXAMPLES:
        example = by_name[f"ghcr.io/schedexec/example-{name}:{images.VERSION}"]
        assert example.parent == runner.name and example.build_args == ()
        assert sorted(e.path for e in example.context) == ["__init__.py", "component.py"]
    assert {e.path.split("/")[0] for e in operator.context} == {
        "runner-image",
        "pyproject.toml",
        "README.md",
        "operator",
    }
    assert not any("__pycache__" in e.path for e in operator.context)
    test_component = by_name["ghcr.io/schedexec/test-component:dev"]
    assert test_component.parent == runner.name and [e.path for e in test_component.context] == ["testcomponent.py"]
    assert len({step.key for step in steps}) == len(steps)
    # The whole chain moves with the base: another suite, other sources, other keys everywhere.
    other = images.plan_images(REPO, machine(apt_source_files=(("/etc/apt/sources.list", ONE_LINE),)))
    assert all(a.key != b.key for a, b in zip(steps, other, strict=True))
    # ... while the apt options only say how to fetch.
    same = images.plan_images(REPO, machine(apt_options=()))
    assert [s.key for s in same] == [s.key for s in steps]


def test_an_image_from_an_unknown_registry_image_is_an_error(tmp_path: Path) -> None:
    for path in [
        "hack/images/python-base/Dockerfile",
        "hack/images/pause/Dockerfile",
        "hack/images/node-base/Dockerfile",
        "Dockerfile",
    ]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text((REPO / path).read_text())
    (tmp_path / "runner-image").mkdir()
    (tmp_path / "runner-image" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    with pytest.raises(ImageBuildError, match=r"builds FROM python:3\.11-slim, which is not built here"):
        images.plan_images(tmp_path, machine())


def test_archive_names_are_file_names_with_the_key() -> None:
    name = images.archive_name("ghcr.io/schedexec/runner:0.1.0", "ab" * 32)
    assert name == "ghcr.io_schedexec_runner_0.1.0-" + "ab" * 16 + ".oci.tar"


def test_the_image_version_is_the_projects() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == images.VERSION


# --- the machine's apt sources ----------------------------------------------------------------------------------


def test_deb822_sources_keep_the_releases_enabled_binary_stanzas() -> None:
    kept = images.deb822_sources(DEB822, "bookworm")
    assert len(kept) == 2
    assert kept[0].splitlines() == [
        "Types: deb",
        "URIs: http://mirror.example.invalid/debian",
        "Suites: bookworm bookworm-updates",
        "Components: main contrib",
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg",
    ]
    assert "Suites: bookworm-security" in kept[1]
    assert "Signed-By: \n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n" in kept[1]  # embedded key kept whole


def test_one_line_sources_keep_the_releases_deb_lines() -> None:
    assert images.one_line_sources(ONE_LINE, "bookworm") == [
        "deb [signed-by=/usr/share/keyrings/k.gpg arch=amd64] http://mirror.example.invalid/debian bookworm main",
        "deb http://mirror.example.invalid/debian bookworm-backports main non-free",
    ]


def test_machine_sources_combine_both_formats_and_fail_when_empty() -> None:
    sources = images.machine_sources(
        [("/etc/apt/sources.list", ONE_LINE), ("/etc/apt/sources.list.d/debian.sources", DEB822)], "bookworm"
    )
    assert sources.one_line.count("\n") == 2 and sources.deb822.count("Types: deb") == 2
    assert not images.machine_sources([("/etc/apt/sources.list", ONE_LINE)], "trixie")
    with pytest.raises(ImageBuildError, match="no enabled apt source for sid"):
        images.rootfs_recipe(images.PYTHON_BASE, machine(codename="sid"))


def test_os_release_codename() -> None:
    assert images.os_release_codename('ID=debian\nVERSION_CODENAME=bookworm\nVERSION="12 (bookworm)"\n') == "bookworm"
    assert images.os_release_codename('VERSION="11 (bullseye)"\n') == "bullseye"
    with pytest.raises(ImageBuildError):
        images.os_release_codename("ID=debian\n")


def test_apt_options_keep_only_fetch_settings() -> None:
    dump = (
        'APT "";\nAPT::Architecture "amd64";\nAcquire::Check-Valid-Until "false";\n'
        'Acquire::http::Proxy "http://proxy.invalid:3128";\nAcquire::Languages "none";\nAcquire::Retries "";\n'
    )
    assert images.apt_options(dump) == [
        'Acquire::Check-Valid-Until "false";',
        'Acquire::http::Proxy "http://proxy.invalid:3128";',
    ]


def test_mmdebstrap_command_uses_the_machines_sources_and_the_recipe(tmp_path: Path) -> None:
    recipe = images.rootfs_recipe(images.PYTHON_BASE, machine())
    files = images.write_source_files(recipe.sources, tmp_path)
    assert [f.name for f in files] == ["debian.sources"]
    command = images.mmdebstrap_command(
        recipe, target=tmp_path / "rootfs.tar", source_files=files, apt_options=['Acquire::Retries "3";']
    )
    assert command[0] == "mmdebstrap"
    assert "--variant=minbase" in command and "--mode=root" in command and "--architectures=amd64" in command
    assert "--include=python3,python3-venv,ca-certificates" in command
    assert '--aptopt=Acquire::Retries "3";' in command
    assert any(c.startswith("--customize-hook=rm -f") and "99mmdebstrap" in c for c in command)
    assert command[-3:] == ["bookworm", str(tmp_path / "rootfs.tar"), str(files[0])]
    pause = images.rootfs_recipe(images.PAUSE, machine())
    assert pause.variant == "extract" and pause.packages == ("catatonit",)


# --- pip's configuration -----------------------------------------------------------------------------------------


def test_pip_settings_merge_files_then_variables_like_pip() -> None:
    files = ["[global]\ncert = /a.crt\ntimeout = 5\n[install]\nfind_links = /w\n", "[global]\ntimeout = 9\n"]
    env = {"PIP_FIND_LINKS": "/opt/wheels", "PIP_DEFAULT_TIMEOUT": "180", "PIP_CONFIG_FILE": "/x", "HOME": "/root"}
    assert images.pip_settings(files, env) == {
        "global": {"cert": "/a.crt", "timeout": "9", "find-links": "/opt/wheels", "default-timeout": "180"},
    }
    assert images.pip_settings(files, {"PIP_CONFIG_FILE": "/dev/null"}) == {}


def test_pip_config_paths_follow_pips_order() -> None:
    paths = images.pip_config_paths({"PIP_CONFIG_FILE": "/custom.conf"}, Path("/home/u"))
    assert paths == [
        Path("/etc/xdg/pip/pip.conf"),
        Path("/etc/pip.conf"),
        Path("/home/u/.pip/pip.conf"),
        Path("/home/u/.config/pip/pip.conf"),
        Path("/custom.conf"),
    ]


def test_pip_build_config_provides_the_machines_files_inside_the_mount() -> None:
    settings = {
        "global": {"cert": "/etc/ssl/ca.crt", "find-links": "/opt/wheels /gone https://w.invalid/", "timeout": "9"},
        "install": {"client-cert": "/etc/ssl/ca.crt"},
    }
    config = images.pip_build_config(settings, exists=lambda path: path != "/gone")
    assert config.files == (("/etc/ssl/ca.crt", "files/0-ca.crt"), ("/opt/wheels", "files/1-wheels"))
    assert config.text == (
        "[global]\n"
        "cert = /etc/xdg/pip/files/0-ca.crt\n"
        "find-links = /etc/xdg/pip/files/1-wheels https://w.invalid/\n"
        "timeout = 9\n\n"
        "[install]\n"
        "client-cert = /etc/xdg/pip/files/0-ca.crt\n\n"
    )


def test_materialize_pip_config(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("CA")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "w.whl").write_text("W")
    settings = {"global": {"cert": str(tmp_path / "ca.crt"), "find-links": str(tmp_path / "wheels")}}
    mounted = tmp_path / "mounted"
    images.materialize_pip_config(images.pip_build_config(settings), mounted)
    assert (mounted / "files" / "0-ca.crt").read_text() == "CA"
    assert (mounted / "files" / "1-wheels" / "w.whl").read_text() == "W"
    assert "cert = /etc/xdg/pip/files/0-ca.crt" in (mounted / "pip.conf").read_text()


# --- buildah --------------------------------------------------------------------------------------------------


def test_buildah_builds_offline_on_its_own_storage(tmp_path: Path) -> None:
    buildah = images.CacheLayout(tmp_path / "images").buildah("overlay")
    command = buildah.build(
        dockerfile=tmp_path / "Dockerfile",
        context=tmp_path / "ctx",
        tag="ghcr.io/schedexec/runner:0.1.0",
        iidfile=tmp_path / "iid",
        build_args={"BASE_IMAGE": "localhost/schedexec/python-base:abc"},
        labels={images.KEY_LABEL: "k"},
        volumes=[(tmp_path / "pip", images.PIP_CONFIG_MOUNT)],
    )
    assert command[:4] == [
        "buildah",
        f"--root={tmp_path}/images/buildah/overlay/root",
        f"--runroot={tmp_path}/images/buildah/overlay/runroot",
        "--storage-driver=overlay",
    ]
    assert command[4] == "bud" and command[-1] == str(tmp_path / "ctx")
    for flag in ("--pull=never", "--network=host", "--isolation=chroot", "--format=oci"):
        assert flag in command
    assert "--build-arg=BASE_IMAGE=localhost/schedexec/python-base:abc" in command
    assert f"--volume={tmp_path}/pip:/etc/xdg/pip:ro" in command
    assert f"--label={images.KEY_LABEL}=k" in command
    push = buildah.push_archive("id", tmp_path / "a.tar", "ghcr.io/schedexec/runner:0.1.0")
    assert push[-2:] == ["id", f"oci-archive:{tmp_path}/a.tar:ghcr.io/schedexec/runner:0.1.0"]


def test_the_cache_lives_under_the_schedexec_cache_dir(tmp_path: Path) -> None:
    assert images.images_cache_dir(None, {"SCHEDEXEC_CACHE_DIR": str(tmp_path)}) == tmp_path / "images"
    assert images.images_cache_dir(tmp_path / "c") == tmp_path / "c" / "images"
    assert images.images_cache_dir(None, {}) == Path("~/.cache/schedexec/images").expanduser()
