"""The local registry's configuration documents and the node's access to it (pure; no root, no registry)."""

from __future__ import annotations

import base64
import json
import tomllib
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedexec_devcluster import images, node, registry
from schedexec_devcluster.__main__ import COMPONENT_NAME, push_component
from schedexec_devcluster.certs import NODE_IP
from tests.devcluster.test_node import BINARIES

PULL = registry.Credentials(registry.PULL_USER, "pull-secret-value")
PATH_PART = st.from_regex(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", fullmatch=True)
TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(st.lists(PATH_PART, min_size=1, max_size=3), TAG, st.sampled_from(["ghcr.io", "localhost", "r.example:5000"]))
def test_a_hosted_image_keeps_its_path_on_the_local_registry(parts: list[str], tag: str, host: str) -> None:
    path = "/".join(parts)
    assert registry.local_reference(f"{host}/{path}:{tag}") == f"{registry.REGISTRY_HOST}/{path}:{tag}"


def test_an_image_without_a_host_goes_under_the_local_registry() -> None:
    assert registry.local_reference("schedexec/runner:0.1.0") == f"{registry.REGISTRY_HOST}/schedexec/runner:0.1.0"
    assert registry.REGISTRY_HOST.startswith(f"{NODE_IP}:")


def test_htpasswd_holds_bcrypt_hashes_that_verify_only_the_right_password() -> None:
    lines = registry.htpasswd({"a": "secret-a", "b": "secret-b"}, rounds=4).splitlines()
    entries = dict(line.split(":", 1) for line in lines)
    assert set(entries) == {"a", "b"}
    assert all(value.startswith("$2b$") for value in entries.values()), "bcrypt: the only scheme distribution reads"
    assert bcrypt.checkpw(b"secret-a", entries["a"].encode())
    assert not bcrypt.checkpw(b"secret-b", entries["a"].encode())
    assert "secret" not in "".join(entries.values())


def test_the_registry_serves_tls_with_htpasswd_on_the_node_address(tmp_path: Path) -> None:
    layout = registry.RegistryLayout(tmp_path)
    config = registry.registry_config(layout, tmp_path / "r.crt", tmp_path / "r.key")
    assert config["http"]["addr"] == registry.REGISTRY_HOST
    assert config["http"]["tls"] == {"certificate": str(tmp_path / "r.crt"), "key": str(tmp_path / "r.key")}
    assert config["auth"] == {"htpasswd": {"realm": registry.REALM, "path": str(layout.htpasswd)}}
    assert Path(config["storage"]["filesystem"]["rootdirectory"]).is_relative_to(tmp_path)


def test_containerd_trusts_the_registry_through_its_hosts_toml_not_an_insecure_flag(tmp_path: Path) -> None:
    layout = node.NodeLayout(tmp_path / "cluster")
    images = tomllib.loads(node.containerd_config(layout, BINARIES))["plugins"]["io.containerd.cri.v1.images"]
    assert images["registry"] == {"config_path": str(layout.registry_hosts_dir)}
    hosts = tomllib.loads(registry.hosts_toml(Path("/pki/ca.crt")))
    url = f"https://{registry.REGISTRY_HOST}"
    assert hosts["server"] == url
    assert hosts["host"][url] == {"capabilities": ["pull", "resolve"], "ca": "/pki/ca.crt"}
    assert "skip_verify" not in registry.hosts_toml(Path("/pki/ca.crt"))


def test_the_node_has_credentials_for_the_project_repositories_only(tmp_path: Path) -> None:
    config = registry.credential_provider_config()
    (provider,) = config["providers"]
    paths = [f"{registry.REGISTRY_HOST}/{path}" for path in ("schedexec", "components")]
    assert provider["matchImages"] == paths
    assert not any(registry.PRIVATE_PATH in pattern for pattern in provider["matchImages"])
    response = registry.credential_provider_response(PULL)
    assert list(response["auth"]) == paths
    assert response["cacheKeyType"] == "Image"
    layout = node.NodeLayout(tmp_path / "cluster")
    args = node.kubelet_args(Path("/bin/kubelet"), layout)
    assert f"--image-credential-provider-config={layout.credential_provider_config}" in args
    assert f"--image-credential-provider-bin-dir={layout.credential_provider_bin_dir}" in args
    without = node.kubelet_args(Path("/bin/kubelet"), layout, registry=False)  # a node with imported images only
    assert not [arg for arg in without if "credential-provider" in arg]


def test_a_pull_secret_carries_the_pull_user_for_the_registry_host() -> None:
    auths = json.loads(registry.docker_config_json(PULL))["auths"]
    entry = auths[registry.REGISTRY_HOST]
    assert base64.b64decode(entry["auth"]).decode() == f"{PULL.username}:{PULL.password}"


def test_credentials_are_made_once_and_kept_private(tmp_path: Path) -> None:
    layout = registry.RegistryLayout(tmp_path)
    first = registry.ensure_credentials(layout)
    assert first == registry.ensure_credentials(layout) == registry.load_credentials(tmp_path)
    assert first["push"].username == registry.PUSH_USER and first["pull"].username == registry.PULL_USER
    assert first["push"].password != first["pull"].password
    assert layout.credentials.stat().st_mode & 0o077 == 0


@given(st.text(min_size=1, max_size=20).filter(lambda name: not registry_name(name)))
def test_push_component_refuses_a_bad_name_before_building_anything(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid image name"):
        push_component(Path("/nonexistent"), name, Path("/nonexistent"))


def test_push_component_refuses_a_directory_without_a_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no Dockerfile"):
        push_component(tmp_path, "my-component", tmp_path)


def registry_name(name: str) -> bool:
    return COMPONENT_NAME.fullmatch(name) is not None


def test_push_credentials_go_through_a_private_authfile_never_the_command_line(tmp_path: Path) -> None:
    """Another user of the machine reads a process's command line (/proc/PID/cmdline), not a 0600 file."""
    password = "pw-9f3c1e7a5b"
    authfile = images.registry_authfile(tmp_path, "10.244.0.1:5000/schedexec/runner:0.1.0", f"push:{password}")
    assert authfile.stat().st_mode & 0o777 == 0o600
    auths = json.loads(authfile.read_text())["auths"]
    assert list(auths) == ["10.244.0.1:5000"]
    assert base64.b64decode(auths["10.244.0.1:5000"]["auth"]).decode() == f"push:{password}"
    buildah = images.Buildah(tmp_path / "root", tmp_path / "run", "vfs", tmp_path / "policy.json")
    command = buildah.push_registry("img", "10.244.0.1:5000/schedexec/runner:0.1.0", authfile, tmp_path)
    assert f"--authfile={authfile}" in command and not [word for word in command if password in word]
