"""Print the ScheduledExecutions for an XSOAR integration's polling commands, read from its own YAML.

Why: an XSOAR integration's .yml says which commands poll (`polling: true`), their arguments and their
defaults; the person bringing the integration to schedexec should not have to retype that. This tool
reads the file and prints one ScheduledExecution per polling command, ready for `kubectl apply -f -`:

    python -m schedexec_runner.xsoar_yaml CapeSandbox.yml --image registry.example/cape:1 \\
        --credentials-secret cape-credentials --params-configmap cape-params

- `spec.method` is the command; `spec.args` its arguments' `defaultValue`s (XSOAR fills them in before
  a command runs; here the execution carries them). Required arguments without a default are listed in
  a comment above the manifest, to be filled in.
- Commands marked `internal: true` are left out: another command schedules them (CAPE's
  `cape-task-poll`), they are not started on their own.
- `--credentials-secret` becomes spec.credentialsSecretRef (its keys are params: `credentials.password`,
  see docs/runner-contract.md); `--params-configmap` becomes a pod-template envFrom with the prefix
  XSOAR_PARAM_, so that ConfigMap's keys are params too.

It needs PyYAML (`pip install 'schedexec-runner[xsoar]'`); the runner itself does not.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from schedexec_runner import xsoar_native

API_VERSION = "schedexec.io/v1alpha1"
KIND = "ScheduledExecution"
NAME_LIMIT = 52
"""Longest execution name this tool makes: room for the run suffix the operator appends to Job names."""


class IntegrationYamlError(ValueError):
    """The file is not an XSOAR integration YAML this tool can read."""


def load(path: Path) -> dict[str, Any]:
    """The integration's YAML as a mapping."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - the runner image leaves it out on purpose
        raise IntegrationYamlError("reading an integration's YAML needs PyYAML: pip install pyyaml") from None
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise IntegrationYamlError(f"cannot read {path}: {exc}") from None
    if not isinstance(loaded, dict) or not isinstance((loaded.get("script") or {}).get("commands"), list):
        raise IntegrationYamlError(f"{path} is not an XSOAR integration YAML (no script.commands)")
    return loaded


def polling_commands(integration: dict[str, Any]) -> list[dict[str, Any]]:
    """The commands marked `polling: true` that are not internal, in the file's order."""
    commands = integration["script"]["commands"]
    return [c for c in commands if isinstance(c, dict) and c.get("polling") is True and not c.get("internal")]


def execution_name(integration: dict[str, Any], command: str) -> str:
    """A DNS-1123 name from the integration's id and the command, at most NAME_LIMIT characters."""
    ident = str((integration.get("commonfields") or {}).get("id") or integration.get("name") or "xsoar")
    name = re.sub(r"[^a-z0-9-]+", "-", f"{ident}-{command}".lower()).strip("-")
    return name[:NAME_LIMIT].rstrip("-") or "xsoar"


def executions(
    integration: dict[str, Any],
    image: str,
    credentials_secret: str | None = None,
    params_configmap: str | None = None,
    timeout_seconds: int | None = None,
) -> list[tuple[list[str], dict[str, Any]]]:
    """(required args left to fill, manifest) for each polling command."""
    found = []
    for command in polling_commands(integration):
        arguments = [a for a in command.get("arguments") or [] if isinstance(a, dict) and a.get("name")]
        args = {str(a["name"]): a["defaultValue"] for a in arguments if a.get("defaultValue") is not None}
        missing = [str(a["name"]) for a in arguments if a.get("required") and a.get("defaultValue") is None]
        spec: dict[str, Any] = {"component": {"image": image}, "method": str(command["name"]), "args": args}
        if credentials_secret:
            spec["credentialsSecretRef"] = {"name": credentials_secret}
        if params_configmap:
            env_from = [{"prefix": xsoar_native.PARAM_PREFIX, "configMapRef": {"name": params_configmap}}]
            spec["podTemplate"] = {"envFrom": env_from}
        if timeout_seconds:
            spec["timeoutSeconds"] = timeout_seconds
        manifest = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": execution_name(integration, str(command["name"]))},
            "spec": spec,
        }
        found.append((missing, manifest))
    return found


def render(found: list[tuple[list[str], dict[str, Any]]], out: TextIO) -> None:
    import yaml

    for index, (missing, manifest) in enumerate(found):
        if index:
            out.write("---\n")
        if missing:
            out.write(f"# required args to fill in: {', '.join(missing)}\n")
        out.write(yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schedexec_runner.xsoar_yaml",
        description="Print a ScheduledExecution for each polling command of an XSOAR integration's YAML.",
    )
    parser.add_argument("yaml", type=Path, help="the integration's .yml")
    parser.add_argument("--image", required=True, help="the image FROM the runner holding the integration's .py")
    parser.add_argument("--credentials-secret", help="the Secret whose keys are params (credentials.password, ...)")
    parser.add_argument("--params-configmap", help="the ConfigMap whose keys are params (envFrom, XSOAR_PARAM_)")
    parser.add_argument("--timeout-seconds", type=int, help="spec.timeoutSeconds of each execution")
    options = parser.parse_args(argv)
    try:
        integration = load(options.yaml)
    except IntegrationYamlError as exc:
        print(f"xsoar_yaml: {exc}", file=sys.stderr)
        return 2
    found = executions(
        integration, options.image, options.credentials_secret, options.params_configmap, options.timeout_seconds
    )
    if not found:
        print(f"xsoar_yaml: {options.yaml} has no polling command (polling: true)", file=sys.stderr)
        return 1
    render(found, out or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
