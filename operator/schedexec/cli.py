"""`schedexec`: the console script (operator, api, crds).

`schedexec operator` runs Kopf, the execution, Job and pod streams
(watches.py) and the controller in one event loop with the settings from the environment (see
settings.py); if any of them stops, the operator stops; `schedexec api` serves the
REST API (the `api` package); `schedexec crds DIR`
writes the generated CRDs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import Any, cast

import kopf
import prometheus_client

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
    if options.command == "api":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        api.run(ApiSettings())
        return 0
    settings = OperatorSettings()
    kopf.configure(log_format=kopf.LogFormat[settings.log_format.upper()])
    logging.getLogger("schedexec").setLevel(settings.log_level.upper())
    asyncio.run(run_operator(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
