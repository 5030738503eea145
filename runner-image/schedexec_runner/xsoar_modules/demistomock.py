"""XSOAR's `demisto` object, as an integration imports it: `import demistomock as demisto`.

Written for schedexec (not copied from demisto/content). In XSOAR the server injects `demisto`; here
every call reads or writes the run that schedexec_runner.xsoar_native is carrying out: the command is
the run's method, the args its args, the params come from the credentials Secret and the ConfigMap
(docs/runner-contract.md, "XSOAR integrations as they are"), what `results` receives becomes the
outcome envelope, and the log calls go to the run's log (credentials redacted). Outside a run (an
integration's own unit tests) there is nothing to read: every call says so.
"""

from __future__ import annotations

from typing import Any

from schedexec_runner.xsoar_native import current


def command() -> str:
    """The command this run runs (the execution's method, or the command the last run scheduled)."""
    return current().command


def args() -> dict[str, Any]:
    """The run's args, the same dict on every call (XSOAR hands the same object around too)."""
    return current().args


def params() -> dict[str, Any]:
    """The integration's configuration: ConfigMap entries and credentials Secret keys, `a.b` keys nested."""
    return current().params


def results(results: Any) -> None:
    """Record an entry (what `return_results` and `return_error` call): it becomes the run's outcome."""
    current().add(results)


def debug(msg: Any, *args: Any) -> None:
    current().log("debug", msg, args)


def info(msg: Any, *args: Any) -> None:
    current().log("info", msg, args)


def error(msg: Any, *args: Any) -> None:
    current().log("error", msg, args)


log = info


def getIntegrationContext() -> dict[str, Any]:
    """The integration context: what the last run of this sequence stored (see `setIntegrationContext`)."""
    return current().integration_context


def setIntegrationContext(context: dict[str, Any]) -> None:
    """Replace the integration context; the next run of the sequence reads it back (never in the status)."""
    current().set_integration_context(context)


def getIntegrationContextVersioned(refresh: bool = False) -> dict[str, Any]:
    return {"context": current().integration_context, "version": -1}


def setIntegrationContextVersioned(context: dict[str, Any], version: int = -1, sync: bool = False) -> None:
    current().set_integration_context(context)


def getLastRun() -> dict[str, Any]:
    """Fetch commands' state: kept like the integration context, under its own key."""
    return dict(current().integration_context.get("schedexec.io/lastRun") or {})


def setLastRun(obj: dict[str, Any]) -> None:
    current().set_integration_context({**current().integration_context, "schedexec.io/lastRun": obj})


def investigation() -> dict[str, Any]:
    """XSOAR's investigation: here the execution (`namespace/name`) stands for it."""
    return {"id": current().execution}


def integrationInstance() -> str:
    return current().execution


def callingContext() -> dict[str, Any]:
    return {"context": {"IntegrationInstance": current().execution}}


def getFilePath(entry_id: str) -> dict[str, Any]:
    """War-room files do not exist outside XSOAR: refused with a message that says so."""
    raise ValueError(f"entry {entry_id!r}: schedexec runs have no war room, so no file entries to read")


def incidents(incidents: Any = None) -> dict[str, Any]:
    return {}


def getArg(name: str) -> Any:
    return current().args.get(name)


def getParam(name: str) -> Any:
    return current().params.get(name)
