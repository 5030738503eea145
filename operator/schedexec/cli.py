"""`schedexec`: the console script (operator, api, crds).

`schedexec operator` runs Kopf, the execution, Job and pod streams
(watches.py) and the controller in one event loop with the settings from the environment (see
settings.py); if any of them stops, the operator stops; `schedexec api` serves the
REST API (the `api` package); `schedexec crds DIR`
writes the generated CRDs.

Settings are read before anything starts. An invalid one (a SCHEDEXEC_RUN_POD_TEMPLATE an execution would be
refused for, a bound crossed, JSON that does not parse) stops the command with one line per bad variable, naming
it and pydantic's reason, and exit code 2: a pod in CrashLoopBackOff shows that line as its last log, where a
traceback would bury it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import socket
import sys
from typing import Any, TypeVar, cast

import kopf
import prometheus_client
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

from schedexec import crd, kube, watches
from schedexec.api import app as api
from schedexec.controller import Controller
from schedexec.handlers import configure, registry_for
from schedexec.leader import LeaderElector, Leases
from schedexec.settings import ApiSettings, OperatorSettings


async def run_operator(settings: OperatorSettings) -> None:
    kopf_settings = configure(kopf.OperatorSettings())
    api = kube.Api.from_environment()  # the watch streams' and the operator's calls: one session
    # Given, not detected: Kopf's detection asks the password database for the user name, and the
    # image's uid 65532 has no entry there (found on the first real kubelet: KeyError, CrashLoopBackOff).
    identity = f"{socket.gethostname()}-{os.getpid()}"
    elector = None
    if settings.leader_election_namespace:
        leases = Leases(api, settings.leader_election_namespace, settings.leader_election_lease)
        elector = LeaderElector(leases, identity, now=api.clock.now)
    controller = Controller(
        cluster=kube.Cluster(api, fence=None if elector is None else elector.fence),
        policy=settings.policy(),
        pod_defaults=settings.pod_defaults(),
        max_running=settings.max_running,
        workers=settings.workers,
        elector=elector,
        quarantine_after=settings.quarantine_after_failures,
        now=api.clock.now,  # the API server's clock: every replica writes and judges times by it
    )
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port)
    kopf_task = asyncio.create_task(
        kopf.operator(
            registry=registry_for(controller),
            settings=kopf_settings,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,  # replicas coordinate through the leader Lease, not Kopf peering
            liveness_endpoint=settings.liveness_endpoint or None,
            identity=cast(Any, identity),  # kopf's Identity is a NewType of str it does not export
        )
    )
    streams = watches.streams(
        api,
        settings.namespaces,
        controller.execution_event,
        controller.job_event,
        controller.pod_event,
        controller.relisted,
        controller.caches_listed,
    )
    others = [asyncio.create_task(controller.run())] + [asyncio.create_task(s) for s in streams]
    try:
        done, _ = await asyncio.wait([kopf_task, *others], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await api.close()
    if kopf_task in done:  # Kopf stopped (a signal): everything stops with it
        await kopf_task
        return
    # never by design: a dead controller or stream must not leave a live-looking operator
    kopf_task.cancel()
    for task in done:
        task.result()  # raises what stopped it
    raise RuntimeError("the controller or a watch stream stopped")


Settings = TypeVar("Settings", bound=BaseSettings)

INVALID_SETTINGS = 2
"""Exit code of a command whose settings are invalid (as argparse's for bad arguments)."""


class InvalidSettings(Exception):
    """Settings the environment gives are invalid; the message has one line per bad variable."""


def settings_problems(error: ValidationError | SettingsError, prefix: str) -> list[str]:
    """`VARIABLE: reason` for each problem of `error` (reading settings whose variables start with `prefix`):
    the variable a user sets, not the field name, and the place inside its value when the value is JSON."""
    if isinstance(error, SettingsError):  # the value is not JSON where the field needs JSON
        named = re.search(r'field "(\w+)"', str(error))
        cause = f": {error.__cause__}" if error.__cause__ else ""
        if named is None:
            return [f"{error}{cause}"]
        return [f"{prefix}{named[1].upper()}: not valid JSON{cause}"]
    problems = []
    for problem in error.errors():
        field, *inside = problem["loc"] or ("",)  # () : a rule across fields, its message names them
        where = ".".join(str(part) for part in inside)
        reason = f"{where}: {problem['msg']}" if where else problem["msg"]
        problems.append(f"{prefix}{str(field).upper()}: {reason}" if field else reason)
    return problems


def read_settings(kind: type[Settings]) -> Settings:
    """`kind` from the environment, or InvalidSettings naming each bad variable."""
    prefix = kind.model_config.get("env_prefix", "")
    try:
        return kind()
    except (ValidationError, SettingsError) as error:
        raise InvalidSettings("\n".join(settings_problems(error, prefix))) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="schedexec", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("operator", help="run the operator (configured by SCHEDEXEC_* variables)")
    commands.add_parser("api", help="run the REST API (configured by SCHEDEXEC_API_* variables)")
    crds = commands.add_parser("crds", help="write the generated CRDs")
    crds.add_argument("directory", nargs="?", default="crds")
    options = parser.parse_args(argv)
    if options.command == "crds":
        return crd.main([options.directory])
    try:
        return run(options.command)
    except InvalidSettings as error:
        for line in str(error).splitlines():
            print(f"schedexec {options.command}: invalid setting {line}", file=sys.stderr)
        return INVALID_SETTINGS


def run(command: str) -> int:
    """`schedexec operator` or `schedexec api` with its settings from the environment."""
    if command == "api":
        api_settings = read_settings(ApiSettings)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        api.run(api_settings)
        return 0
    settings = read_settings(OperatorSettings)
    kopf.configure(log_format=kopf.LogFormat[settings.log_format.upper()])
    logging.getLogger("schedexec").setLevel(settings.log_level.upper())
    asyncio.run(run_operator(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
