"""The Kopf wiring: the operator's runtime, settings and login.

Kopf runs the operator (`kopf.operator`): it logs in and keeps the
credentials fresh and serves the liveness endpoint with the controller's
probe. That endpoint answers anyone who can reach the pod (the kubelet
probes it without credentials), so the probe tells only whether the
operator has listed its caches, never a count of executions, runs or the
queue: those are the metrics' (metrics.py), behind the chart's
NetworkPolicy.

No resource handler is registered: the executions, Jobs and pods are
streamed straight into the store by the operator's own list/watch
(watches.py says why), so Kopf writes nothing to the objects itself (no
finalizers, no progress annotations): every write the operator makes is one
the controller decided.
"""

from __future__ import annotations

from typing import Any

import kopf

from schedexec import tracing
from schedexec.controller import Controller


def configure(settings: kopf.OperatorSettings) -> kopf.OperatorSettings:
    """Kopf's settings, made before it starts ."""
    settings.posting.enabled = False  # events are posted by the controller, on the execution
    settings.scanning.disabled = True  # no CRD/namespace listing: keeps the RBAC minimal
    return settings


def registry_for(controller: Controller) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """The same credentials as schedexec.kube: in-cluster, else the kubeconfig (via pykube-ng)."""
        return kopf.login_via_pykube(**kwargs)

    @kopf.on.startup(registry=registry)
    def traces(**_: Any) -> None:
        """Traces to the exporter OTEL_* names, if it names one (tracing.py)."""
        tracing.setup("schedexec-operator")

    @kopf.on.cleanup(registry=registry)
    def flush(**_: Any) -> None:
        tracing.shutdown()

    @kopf.on.probe(id="schedexec", registry=registry)
    def probe(**_: Any) -> str:
        return health(controller.listed.is_set())

    return registry


def health(listed: bool) -> str:
    """What /healthz says of the operator: whether its watch streams have listed once (`listed`: it reconciles)
    or not yet; nothing about the executions of any tenant."""
    return "reconciling" if listed else "listing"
