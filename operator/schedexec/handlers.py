"""The Kopf wiring: the operator's runtime, settings and login.

Kopf runs the operator (`kopf.operator`): it logs in and keeps the
credentials fresh, serves the liveness endpoint with the controller's
probe, and its watch stream (list, watch, relist, reconnect) feeds the
controller with the settings made here (watches.py). No resource handler
is registered: the executions, Jobs and pods are streamed straight into the
store (watches.py says why), so Kopf writes nothing to the objects itself
(no finalizers, no progress annotations): every write the operator makes is
one the controller decided.
"""

from __future__ import annotations

from typing import Any

import kopf

from schedexec import runs
from schedexec.controller import Controller

LIST_PAGE = 500
"""Executions (and Jobs, pods) per page of the initial list: at most one page is parsed at a time."""


def configure(settings: kopf.OperatorSettings) -> kopf.OperatorSettings:
    """Kopf's settings, made before it starts (watches.py streams with them too)."""
    settings.posting.enabled = False  # events are posted by the controller, on the execution
    settings.scanning.disabled = True  # no CRD/namespace listing: keeps the RBAC minimal
    settings.watching.server_timeout = 300
    # Memory at 10,000 executions (issue 17): a listed execution is about 19 KB as Python objects; listed in
    # pages, an operator (re)starting on 10,000 executions never holds them all at once as objects.
    settings.watching.chunk_size = LIST_PAGE
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
