"""The local cluster's image registry: CNCF distribution on the node's address, TLS from the cluster's CA, htpasswd.

Why this exists: a node that gets its images by ``ctr images import`` never
pulls, so no ``imagePullSecrets``, no registry authentication and no pull
error has ever happened for real. With a registry, the real node pulls every
project image the way a production node does: over TLS, authenticated.

How the pieces fit (the configuration documents are pure functions, tested
in tests/devcluster/test_registry.py):

- ``registry`` (distribution v3, built from the Go module proxy by
  binaries.py) listens on ``REGISTRY_HOST`` = NODE_IP:REGISTRY_PORT with a
  serving certificate of the dev cluster's CA (certs.py) and htpasswd
  (bcrypt) authentication; its storage is ``<state_dir>/registry/storage``.
- Two users, with random passwords made once per cluster (0600,
  ``<state_dir>/registry/credentials.json``): ``PUSH_USER`` (what ``make
  images`` pushes with) and ``PULL_USER`` (what the node pulls the project's
  images with).
- containerd trusts the registry through its registry host configuration
  (``config_path`` + ``<host>/hosts.toml`` naming the CA), never through an
  insecure flag.
- distribution's htpasswd auth has no per-repository ACL: every repository
  needs credentials. The node gets the pull user's only for
  ``REGISTRY_HOST/schedexec/`` (the project's images) and
  ``REGISTRY_HOST/components/`` (your own, ``push-component``), as production nodes
  get their registry's credentials: a kubelet image credential provider
  (``matchImages`` with a path; ECR/GCR/ACR providers work so). Any other
  repository of the registry (``PRIVATE_PATH/...`` in the tests) needs the
  pod's ``imagePullSecrets``, so a missing Secret is a real 401.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bcrypt

from schedexec_devcluster.certs import NODE_IP

REGISTRY_PORT = 5000
"""Fixed, as NODE_IP: the node is one per machine, and image references name the port."""
REGISTRY_HOST = f"{NODE_IP}:{REGISTRY_PORT}"
PROJECT_PATH = "schedexec"
"""The project's images are REGISTRY_HOST/schedexec/<name> (ghcr.io/schedexec/<name> for users)."""
COMPONENTS_PATH = "components"
"""Your own components (``push-component``): REGISTRY_HOST/components/<name>:<content tag>."""
NODE_PATHS: tuple[str, ...] = (PROJECT_PATH, COMPONENTS_PATH)
"""The repositories the node has credentials for (its credential provider), as a production node has for its
organisation's registry."""
PRIVATE_PATH = "private"
"""Repositories the node has no credentials for: pulling them needs imagePullSecrets."""
PUSH_USER = "schedexec-push"
PULL_USER = "schedexec-pull"
REALM = "schedexec-devcluster"
CREDENTIAL_PROVIDER = "schedexec-registry-credentials"
"""The kubelet's credential provider plugin (an executable of that name in the provider bin dir)."""
CREDENTIAL_PROVIDER_API = "credentialprovider.kubelet.k8s.io/v1"


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @property
    def creds(self) -> str:
        """``user:password``, as buildah's and helm's ``--creds`` take it."""
        return f"{self.username}:{self.password}"


@dataclasses.dataclass(frozen=True)
class RegistryLayout:
    """The registry's files under the cluster's state directory."""

    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "registry"

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    @property
    def htpasswd(self) -> Path:
        return self.root / "htpasswd"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def cert_dir(self) -> Path:
        """A directory holding only the CA (``ca.crt``), as buildah's ``--cert-dir`` reads it."""
        return self.root / "certs.d"


def local_reference(image: str, host: str = REGISTRY_HOST) -> str:
    """``ghcr.io/schedexec/runner:0.1.0`` → ``<host>/schedexec/runner:0.1.0``: the same path, on ``host``."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"{host}/{rest}"
    return f"{host}/{image}"


def htpasswd(users: Mapping[str, str], rounds: int = 10) -> str:
    """An htpasswd file with bcrypt hashes (the only scheme distribution accepts)."""
    lines = []
    for user, password in sorted(users.items()):
        if ":" in user or not user:
            raise ValueError(f"invalid htpasswd user name {user!r}")
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()
        lines.append(f"{user}:{hashed}\n")
    return "".join(lines)


def registry_config(
    layout: RegistryLayout, serving_cert: Path, serving_key: Path, host: str = REGISTRY_HOST
) -> dict[str, Any]:
    """distribution's configuration: TLS, htpasswd, filesystem storage, no telemetry or reporting."""
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(layout.storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "auth": {"htpasswd": {"realm": REALM, "path": str(layout.htpasswd)}},
        "http": {
            "addr": host,
            "tls": {"certificate": str(serving_cert), "key": str(serving_key)},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
            "debug": {"addr": ""},
        },
    }


def hosts_toml(ca_cert: Path, host: str = REGISTRY_HOST) -> str:
    """containerd's ``certs.d/<host>/hosts.toml``: the registry over HTTPS, trusted through the cluster's CA."""
    return f"""\
server = {json.dumps(f"https://{host}")}

[host.{json.dumps(f"https://{host}")}]
  capabilities = ["pull", "resolve"]
  ca = {json.dumps(str(ca_cert))}
"""


def credential_provider_config(host: str = REGISTRY_HOST) -> dict[str, Any]:
    """The kubelet's CredentialProviderConfig: the pull user for NODE_PATHS only."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [
            {
                "name": CREDENTIAL_PROVIDER,
                "apiVersion": CREDENTIAL_PROVIDER_API,
                "matchImages": [f"{host}/{path}" for path in NODE_PATHS],
                "defaultCacheDuration": "10m",
            }
        ],
    }


def credential_provider_response(pull: Credentials, host: str = REGISTRY_HOST) -> dict[str, Any]:
    """What the plugin answers: credentials keyed by NODE_PATHS, so they match nothing else."""
    return {
        "apiVersion": CREDENTIAL_PROVIDER_API,
        "kind": "CredentialProviderResponse",
        "cacheKeyType": "Image",
        "cacheDuration": "10m",
        "auth": {f"{host}/{path}": {"username": pull.username, "password": pull.password} for path in NODE_PATHS},
    }


def docker_config_json(credentials: Credentials, host: str = REGISTRY_HOST) -> str:
    """The ``.dockerconfigjson`` of a ``kubernetes.io/dockerconfigjson`` pull Secret for ``host``."""
    auth = base64.b64encode(credentials.creds.encode()).decode()
    entry = {"username": credentials.username, "password": credentials.password, "auth": auth}
    return json.dumps({"auths": {host: entry}})


def ensure_credentials(layout: RegistryLayout) -> dict[str, Credentials]:
    """The push and pull users, with passwords made once per cluster and kept (0600) in its state directory."""
    try:
        stored = json.loads(layout.credentials.read_text())
        found = {role: Credentials(**stored[role]) for role in ("push", "pull")}
    except (OSError, ValueError, KeyError, TypeError):
        found = {
            "push": Credentials(PUSH_USER, secrets.token_urlsafe(24)),
            "pull": Credentials(PULL_USER, secrets.token_urlsafe(24)),
        }
        layout.root.mkdir(parents=True, exist_ok=True)
        document = {role: dataclasses.asdict(value) for role, value in found.items()}
        _write_private(layout.credentials, json.dumps(document, indent=2) + "\n")
    return found


def load_credentials(state_dir: Path) -> dict[str, Credentials]:
    """The credentials of a running cluster's registry (``push``, ``pull``)."""
    layout = RegistryLayout(state_dir)
    if not layout.credentials.is_file():
        raise FileNotFoundError(f"no registry credentials in {layout.credentials}: is the cluster up (real node)?")
    return ensure_credentials(layout)


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)
