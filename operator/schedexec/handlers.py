"""The Kopf wiring: watch events in, nothing else.

Kopf lists and watches ScheduledExecutions, logs in, handles reconnects and
serves the liveness endpoint; each execution event is handed to the
controller in one line. The Jobs and pods are watched with Kopf's stream
but outside its handler machinery (watches.py says why), with the settings
made here. Only event handlers are used, so Kopf writes nothing to the
objects itself (no finalizers, no progress annotations): every write the
operator makes is one the controller decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

from schedexec import models, runs
from schedexec.controller import Controller

LIST_PAGE = 500
"""Executions (and Jobs, pods) per page of the initial list: at most one page is parsed at a time."""
WORKER_IDLE_SECONDS = 0.5
"""How long Kopf keeps an execution's worker (and the last body it handled) after its last event (Kopf: 5 s)."""


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf's diff-base (a deep copy of every body, kept to diff the next one) feeds change handlers;
    schedexec has only event handlers, so nothing is built, kept or compared."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: kopf.OperatorSettings) -> kopf.OperatorSettings:
    """Kopf's settings, made before it starts (watches.py streams with them too)."""
    settings.posting.enabled = False  # events are posted by the controller, on the execution
    settings.persistence.diffbase_storage = NoDiffBase()  # no deep copy per event: nothing reads it
    settings.scanning.disabled = True  # no CRD/namespace listing: keeps the RBAC minimal
    settings.watching.server_timeout = 300
    # Memory at 10,000 executions (issue 17): a listed execution is about 19 KB as Python objects, and each is
    # held by the Kopf worker that handled it until the worker has idled `idle_timeout`. Listed in pages and
    # with workers that exit soon, an operator (re)starting on 10,000 executions never holds them all at once.
    settings.watching.chunk_size = LIST_PAGE
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    # watch only the Jobs schedexec made, filtered by the API server, not every Job of the cluster
    settings.watching.label_selectors["batch", "jobs"] = f"app.kubernetes.io/managed-by={runs.MANAGED_BY}"
    # the runs' pods carry the Job template's labels: the same selector keeps every other pod out
    settings.watching.label_selectors["", "pods"] = f"app.kubernetes.io/managed-by={runs.MANAGED_BY}"
    return settings


def registry_for(controller: Controller) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """The same credentials as schedexec.kube: in-cluster, else the kubeconfig (via pykube-ng)."""
        return kopf.login_via_pykube(**kwargs)

    @kopf.on.event(models.GROUP, models.VERSION, models.PLURAL, registry=registry)
    async def execution_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        controller.execution_event(event.get("type"), body)

    @kopf.on.probe(id="schedexec", registry=registry)
    def probe(**_: Any) -> dict[str, int]:
        return {
            "executions": len(controller.store.executions),
            "pods": len(controller.store.pods),
            "running": len(controller.slots.holders),
            "queued": len(controller.slots.waiting),
            "timers": len(controller.timers),
        }

    return registry
