"""Lookup rules of schedexec_devcluster.binaries (no Go, no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedexec_devcluster import binaries
from schedexec_devcluster.binaries import (
    ETCD,
    ETCD_BUILD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    KUBECTL,
    KUBERNETES_BUILD,
    KUBERNETES_VERSION,
    Binaries,
    BinariesUnavailable,
    build_command,
    cache_bin_dir,
    ensure_binaries,
    find_binaries,
)

ENV_VARS = (
    "TEST_ASSET_ETCD",
    "TEST_ASSET_KUBE_APISERVER",
    "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
    "TEST_ASSET_KUBECTL",
    "KUBEBUILDER_ASSETS",
    "SCHEDEXEC_CACHE_DIR",
)


def make_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache dir and an environment free of envtest variables."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCHEDEXEC_CACHE_DIR", str(tmp_path / "cache"))
    return cache_bin_dir()


def test_cache_dir_layout(cache: Path, tmp_path: Path) -> None:
    assert cache == tmp_path / "cache" / f"k8s-{KUBERNETES_VERSION}" / "bin"


def test_cache_dir_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SCHEDEXEC_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_bin_dir() == tmp_path / ".cache" / "schedexec" / "k8s-v1.36.3" / "bin"


def test_nothing_found(cache: Path) -> None:
    found = find_binaries()
    assert found == Binaries()
    assert found.missing() == [ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBECTL]


def test_everything_from_cache(cache: Path) -> None:
    paths = {name: make_executable(cache / name) for name in binaries.COMPONENTS}
    found = find_binaries()
    assert found.missing() == []
    assert found == Binaries(
        etcd=paths[ETCD],
        kube_apiserver=paths[KUBE_APISERVER],
        kube_controller_manager=paths[KUBE_CONTROLLER_MANAGER],
        kubectl=paths[KUBECTL],
    )


def test_non_executable_file_is_ignored(cache: Path) -> None:
    (cache).mkdir(parents=True)
    (cache / ETCD).write_text("not executable")
    assert find_binaries().etcd is None


def test_kubebuilder_assets_win_over_cache(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = tmp_path / "assets"
    for name in (ETCD, KUBE_APISERVER, KUBECTL):
        make_executable(assets / name)
        make_executable(cache / name)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    found = find_binaries()
    assert found.etcd == assets / ETCD
    assert found.kube_apiserver == assets / KUBE_APISERVER
    assert found.kubectl == assets / KUBECTL


def test_asset_env_vars_win_over_kubebuilder_assets(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    make_executable(assets / ETCD)
    explicit = make_executable(tmp_path / "elsewhere" / "my-etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    monkeypatch.setenv("TEST_ASSET_ETCD", str(explicit))
    assert find_binaries().etcd == explicit


def test_broken_asset_env_var_is_an_error(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_executable(cache / KUBE_APISERVER)
    monkeypatch.setenv("TEST_ASSET_KUBE_APISERVER", str(tmp_path / "nope"))
    with pytest.raises(BinariesUnavailable, match="TEST_ASSET_KUBE_APISERVER"):
        find_binaries()


def test_controller_manager_found_next_to_apiserver(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apiserver = make_executable(tmp_path / "k8s" / KUBE_APISERVER)
    manager = make_executable(tmp_path / "k8s" / KUBE_CONTROLLER_MANAGER)
    make_executable(cache / KUBE_CONTROLLER_MANAGER)
    monkeypatch.setenv("TEST_ASSET_KUBE_APISERVER", str(apiserver))
    found = find_binaries()
    assert found.kube_apiserver == apiserver
    assert found.kube_controller_manager == manager


def test_controller_manager_falls_back_to_cache(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """envtest assets have no kube-controller-manager; the built one is used."""
    assets = tmp_path / "assets"
    make_executable(assets / KUBE_APISERVER)
    cached = make_executable(cache / KUBE_CONTROLLER_MANAGER)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    found = find_binaries()
    assert found.kube_apiserver == assets / KUBE_APISERVER
    assert found.kube_controller_manager == cached


def test_controller_manager_not_taken_from_assets_dir_without_apiserver(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    make_executable(assets / KUBE_CONTROLLER_MANAGER)
    cached_apiserver = make_executable(cache / KUBE_APISERVER)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    found = find_binaries()
    assert found.kube_apiserver == cached_apiserver
    assert found.kube_controller_manager is None


def test_require_names_the_missing_component() -> None:
    with pytest.raises(BinariesUnavailable, match="kube-controller-manager"):
        Binaries().require(KUBE_CONTROLLER_MANAGER)


def test_unknown_component_is_rejected() -> None:
    with pytest.raises(ValueError):
        Binaries().get("kubelet")


def test_build_command_for_several_packages_targets_a_directory(tmp_path: Path) -> None:
    command = build_command(KUBERNETES_BUILD, [KUBE_APISERVER, KUBECTL], tmp_path)
    assert command[:3] == ["go", "build", "-trimpath"]
    assert command[command.index("-o") + 1] == f"{tmp_path}/"
    assert command[-2:] == ["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl"]
    ldflags = command[command.index("-ldflags") + 1]
    assert "-X k8s.io/component-base/version.gitVersion=v1.36.3" in ldflags
    assert "-X k8s.io/component-base/version.gitMajor=1 " in ldflags
    assert "-X k8s.io/component-base/version.gitMinor=36 " in ldflags


def test_build_command_for_etcd_names_the_output(tmp_path: Path) -> None:
    command = build_command(ETCD_BUILD, [ETCD], tmp_path)
    assert command[command.index("-o") + 1] == str(tmp_path / "etcd")
    assert command[-1] == "go.etcd.io/etcd/server/v3"


def test_wrapper_modules_exist() -> None:
    assert (KUBERNETES_BUILD.module_dir / "go.mod").is_file()
    assert (ETCD_BUILD.module_dir / "go.mod").is_file()


def test_ensure_without_build_lists_what_is_missing(cache: Path) -> None:
    make_executable(cache / ETCD)
    with pytest.raises(BinariesUnavailable) as error:
        ensure_binaries(build=False)
    message = str(error.value)
    assert "etcd (" not in message
    for name in (KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBECTL):
        assert name in message
    assert str(cache) in message


def test_ensure_without_go_explains_why(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BinariesUnavailable, match="`go` is not on PATH"):
        ensure_binaries()


def test_ensure_returns_complete_set_without_building(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in binaries.COMPONENTS:
        make_executable(cache / name)
    monkeypatch.setenv("PATH", "")  # would fail if it tried to build
    assert ensure_binaries().missing() == []


@pytest.mark.parametrize(
    "group",
    [binaries.KUBERNETES_BUILD, binaries.NODE_KUBERNETES_BUILD, binaries.CONTAINERD_BUILD],
    ids=["kubernetes", "node", "containerd"],
)
def test_a_group_built_into_a_directory_yields_its_component_names(group: binaries.BuildGroup) -> None:
    """`go build -o DIR/ pkg...` names each binary after its package's last path element (a cold build found
    cri-reset built as `crireset`; a build of that one package alone, with an explicit -o, had hidden it)."""
    for component, package in group.packages.items():
        assert package.rsplit("/", 1)[1] == component
