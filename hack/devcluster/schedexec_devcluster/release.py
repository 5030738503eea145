"""``make release REGISTRY=... VERSION=...``: publish what a user of a release pulls, images and chart.

Why this exists: the README and values.yaml name images and a chart that nothing built or published. A
release pushes, for one VERSION:

- ``REGISTRY/runner``, ``REGISTRY/operator`` and ``REGISTRY/example-<name>`` ``:VERSION``, the images
  ``make images`` builds (offline, buildah), committed with the OCI labels ``org.opencontainers.image.source``
  (the chart's ``home``), ``.revision`` (the checkout's commit), ``.version`` and ``.licenses`` (Apache-2.0);
- the chart as an OCI artifact, ``oci://REGISTRY/charts/schedexec`` version VERSION, appVersion VERSION and
  ``image.repository`` = ``REGISTRY/operator``, packaged from a temporary copy (the tree is never edited).

Credentials: ``REGISTRY_CREDS=user:password`` if set; else, for the local cluster's registry, its push user;
else what ``buildah login`` / ``helm registry login`` stored. ``--ca-file`` (default: the local cluster's CA
for its registry) is trusted for TLS, never skipped. Pure pieces (references, labels, the values rewrite) are
tested in tests/devcluster/test_release.py; tests/node/test_release.py releases to the local registry and
installs the chart from ``oci://`` on the real node.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from schedexec_devcluster.images import EXAMPLES, REGISTRY, VERSION, push_images
from schedexec_devcluster.registry import REGISTRY_HOST, RegistryLayout, load_credentials

LICENSE = "Apache-2.0"
RELEASED: tuple[str, ...] = ("runner", "operator", *(f"example-{name}" for name in EXAMPLES))
"""The released images' names (the test component is the test suite's, not released)."""
CHART_NAME = "schedexec"
CREDS_ENV_VAR = "REGISTRY_CREDS"
_REPOSITORY_LINE = re.compile(r"^(  repository:[ \t]*)\S+(.*)$", re.MULTILINE)


class ReleaseError(RuntimeError):
    """The release could not be made; the message says which step and why."""


def released_images() -> dict[str, str]:
    """The project's built image names (``ghcr.io/schedexec/runner:0.1.0``) by released name (``runner``)."""
    return {name: f"{REGISTRY}/{name}:{VERSION}" for name in RELEASED}


def release_reference(registry: str, name: str, version: str) -> str:
    return f"{registry.rstrip('/')}/{name}:{version}"


def oci_labels(source: str, revision: str, version: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.licenses": LICENSE,
    }


def with_image_repository(values: str, repository: str) -> str:
    """values.yaml with ``image.repository`` set, comments and order kept (the only line that changes)."""
    document = yaml.safe_load(values)
    if not isinstance(document, dict) or "repository" not in (document.get("image") or {}):
        raise ReleaseError("the chart's values.yaml has no image.repository")
    start = values.index("\nimage:\n") + 1
    end = re.search(r"^\S", values[start + len("image:\n") :], re.MULTILINE)
    stop = start + len("image:\n") + end.start() if end else len(values)
    block, replaced = _REPOSITORY_LINE.subn(lambda m: f"{m.group(1)}{repository}{m.group(2)}", values[start:stop], 1)
    if replaced != 1:
        raise ReleaseError("the chart's values.yaml has no `  repository:` line under image:")
    result = values[:start] + block + values[stop:]
    assert yaml.safe_load(result)["image"]["repository"] == repository
    return result


_ARTIFACT_HUB_IMAGE = re.compile(r"^(\s+image: )\S+/([a-z0-9][-a-z0-9_.]*):\S+$", re.MULTILINE)


def with_artifact_hub_images(chart_yaml: str, registry: str, version: str) -> str:
    """Chart.yaml with the images of its `artifacthub.io/images` annotation named as released (REGISTRY/NAME:VERSION),
    everything else unchanged: Artifact Hub shows (and scans) those references."""
    block = re.search(r"^  artifacthub\.io/images: \|\n((?:    .*\n)+)", chart_yaml, re.MULTILINE)
    if block is None:
        raise ReleaseError("the chart's Chart.yaml has no artifacthub.io/images annotation")
    images = _ARTIFACT_HUB_IMAGE.sub(lambda m: f"{m.group(1)}{registry.rstrip('/')}/{m.group(2)}:{version}", block[1])
    return chart_yaml[: block.start(1)] + images + chart_yaml[block.end(1) :]


def registry_host(registry: str) -> str:
    return registry.split("/", 1)[0]


def _log(message: str) -> None:
    print(f"[release] {message}", file=sys.stderr, flush=True)


def _run(command: Sequence[str], what: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(
        list(command), capture_output=True, text=True, input=stdin, env={**os.environ, **(env or {})}, timeout=600
    )
    if done.returncode != 0:
        raise ReleaseError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def release(
    repo_root: Path,
    registry: str,
    version: str,
    helm: Path,
    *,
    creds: str | None = None,
    ca_file: Path | None = None,
    state_dir: Path | None = None,
) -> list[str]:
    """Push the released images and the chart; the pushed references (the chart's as ``oci://...:VERSION``)."""
    host = registry_host(registry)
    if creds is None and host == REGISTRY_HOST and state_dir is not None:
        creds = load_credentials(state_dir)["push"].creds
    if ca_file is None and host == REGISTRY_HOST and state_dir is not None:
        ca_file = RegistryLayout(state_dir).cert_dir / "ca.crt"
    chart_dir = repo_root / "charts" / CHART_NAME
    source = yaml.safe_load((chart_dir / "Chart.yaml").read_text())["home"]
    revision = _run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], "reading the checkout's commit").strip()
    labels = oci_labels(source, revision, version)
    with tempfile.TemporaryDirectory(prefix="schedexec-release-") as work_dir:
        work = Path(work_dir)
        cert_dir = work / "certs"
        cert_dir.mkdir()
        if ca_file is not None:
            shutil.copyfile(ca_file, cert_dir / "ca.crt")
        by_source = {built: name for name, built in released_images().items()}
        pushed = push_images(
            repo_root,
            lambda built: release_reference(registry, by_source[built], version),
            creds or "",
            cert_dir,
            only=set(by_source),
            labels=labels,
        )
        chart = work / "chart" / CHART_NAME
        shutil.copytree(chart_dir, chart)
        values = chart / "values.yaml"
        values.write_text(with_image_repository(values.read_text(), f"{registry.rstrip('/')}/operator"))
        chart_yaml = chart / "Chart.yaml"
        chart_yaml.write_text(with_artifact_hub_images(chart_yaml.read_text(), registry, version))
        _run(
            [str(helm), "package", str(chart), "--version", version, "--app-version", version, "-d", str(work)],
            "helm package",
        )
        package = work / f"{CHART_NAME}-{version}.tgz"
        tls = ["--ca-file", str(ca_file)] if ca_file is not None else []
        helm_env = {"HELM_REGISTRY_CONFIG": str(work / "registry.json")} if creds else {}
        if creds:
            user, _, password = creds.partition(":")
            _run(
                [str(helm), "registry", "login", host, "--username", user, "--password-stdin", *tls],
                f"helm registry login {host}",
                helm_env,
                password,
            )
        _run([str(helm), "push", str(package), f"oci://{registry.rstrip('/')}/charts", *tls], "helm push", helm_env)
        chart_ref = f"oci://{registry.rstrip('/')}/charts/{CHART_NAME}:{version}"
        _log(f"pushed {len(pushed)} images and {chart_ref}")
    return [*pushed, chart_ref]


def creds_from_environment() -> str | None:
    return os.environ.get(CREDS_ENV_VAR) or None
