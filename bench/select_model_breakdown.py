"""`make bench-breakdown`: where the seconds of a REST `select-model` go on the real node, next to a raw Job's.

The issue measured a REST `select-model` of the shop example at about 3 s
from POST to the 303 and nothing told where that time went. This bench
starts the real node (containerd + kubelet, the node tier's local registry)
with the chart's operator and REST API tracing to a small OTLP/HTTP
collector in this process (on the node's host address, decoded with
opentelemetry-proto's public protobuf classes), runs N `select-model`
requests one after the other, and times each stage from the sources that
see it best, all on this one machine's clock:

- this client: the POST sent, the 303 received (polling every POLL s);
- the traces: the API's request span (POST received), the operator's
  reconcile spans (the one that wrote the final status, after the run's
  Job became Complete, which is what the operator takes a run's end
  from: operator observed);
- watches this bench holds on the namespace's executions, Jobs and pods
  (the time an event arrived; millisecond resolution, unlike the objects'
  one-second timestamps): execution created, Job created, pod scheduled,
  sandbox ready (PodReadyToStartContainers), kubelet reported (the
  container's terminated state), Job complete (the Job controller's
  Complete condition), status written (the execution's final phase);
- the run's log: the runs get PYTHONPROFILEIMPORTTIME=1 (the chart's
  operator.runPodTemplate), so the interpreter's first import line, which
  containerd stamps with nanoseconds, says when Python was running in the
  container (container started);
- the shop (examples/remote_services.py, served by this process): when the
  component's one call arrived; the component returns right after its
  answer (component returned).

The same for raw Jobs made from the run's own Job (same image, command, env
and pod spec; without its owner, labels and trace context): create sent,
Job created, scheduled, sandbox, started, component returned, kubelet
reported, Job complete.

The stage computations are pure functions of the recorded events
(tests/unit/test_breakdown.py). Results: bench/results/breakdown-node.json,
one trace's span tree in bench/results/breakdown-trace.json, and the
section "Where a REST select-model's seconds go" of docs/benchmarks-node.md
(kept when bench/node.py rewrites the rest). It reports; it passes or
fails nothing.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gzip
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "breakdown-node.json"
TRACE = REPO / "bench" / "results" / "breakdown-trace.json"
REPORT = REPO / "docs" / "benchmarks-node.md"
SECTION = "## Where a REST select-model's seconds go"
TRACE_ANNOTATION = "schedexec.io/traceparent"
"""schedexec.tracing.ANNOTATION (this module's pure part imports nothing of schedexec)."""
POLL = 0.05
"""Seconds between this client's polls of the execution (so the 303 is seen within 50 ms)."""

SELECT_MODEL_STAGES = (
    ("post_sent", "post_received", "client → API (TLS, token review)"),
    ("post_received", "execution_created", "API: POST → execution created"),
    ("execution_created", "job_created", "operator: execution → Job created"),
    ("job_created", "pod_scheduled", "Job controller + scheduler: Job → pod scheduled"),
    ("pod_scheduled", "sandbox_ready", "kubelet: scheduled → sandbox ready"),
    ("sandbox_ready", "container_started", "kubelet + containerd: sandbox → Python running"),
    ("container_started", "component_returned", "Python start, runner, component → component returned"),
    ("component_returned", "kubelet_reported", "container exit → kubelet reported"),
    ("kubelet_reported", "job_complete", "Job controller: pod succeeded → Job Complete"),
    ("job_complete", "operator_observed", "Job Complete → operator reconciles"),
    ("operator_observed", "status_written", "operator: reconcile → status written"),
    ("status_written", "poll_answered", "status written → poll answered (303)"),
)
"""(from mark, to mark, what happens in between), in the order a select-model passes them."""

RAW_JOB_STAGES = (
    ("create_sent", "job_created", "client → Job created"),
    ("job_created", "pod_scheduled", "Job controller + scheduler: Job → pod scheduled"),
    ("pod_scheduled", "sandbox_ready", "kubelet: scheduled → sandbox ready"),
    ("sandbox_ready", "container_started", "kubelet + containerd: sandbox → Python running"),
    ("container_started", "component_returned", "Python start, runner, component → component returned"),
    ("component_returned", "kubelet_reported", "container exit → kubelet reported"),
    ("kubelet_reported", "job_complete", "Job controller: pod succeeded → Job Complete"),
)


# ---- pure: events → marks → stages ------------------------------------------------------------------------------


def first(events: Iterable[Mapping[str, Any]], matches: Callable[[Mapping[str, Any]], bool]) -> float | None:
    """The arrival time (`t`) of the first watch event whose object `matches`."""
    return next((float(e["t"]) for e in events if matches(e["object"])), None)


def condition_true(kind: str) -> Callable[[Mapping[str, Any]], bool]:
    def matches(obj: Mapping[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)

    return matches


def terminated(obj: Mapping[str, Any]) -> bool:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    return any((s.get("state") or {}).get("terminated") for s in statuses)


def log_stamp(line: str) -> float | None:
    """The time containerd stamped a `kubectl logs --timestamps` line with (RFC 3339, nanoseconds), if any."""
    head = line.split(" ", 1)[0].rstrip("Z")
    if "T" not in head:
        return None
    whole, _, fraction = head.partition(".")
    try:
        parsed = dt.datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")
    except ValueError:
        return None
    return parsed.timestamp()


def pod_marks(pod_events: Sequence[Mapping[str, Any]], log: str) -> dict[str, float | None]:
    """A run pod's marks: scheduled, sandbox ready and kubelet reported from the watch, container started from
    its log's first stamped line (the interpreter's first import under PYTHONPROFILEIMPORTTIME)."""
    stamps = [s for s in (log_stamp(line) for line in log.splitlines()) if s is not None]
    return {
        "pod_scheduled": first(pod_events, condition_true("PodScheduled")),
        "sandbox_ready": first(pod_events, condition_true("PodReadyToStartContainers")),
        "container_started": min(stamps) if stamps else None,
        "kubelet_reported": first(pod_events, terminated),
    }


def after(times: Iterable[float], start: float | None) -> float | None:
    """The first of `times` at or after `start`."""
    later = sorted(t for t in times if start is not None and t >= start)
    return later[0] if later else None


def wrote(starts: Iterable[float], written: float | None) -> float | None:
    """The start of the reconcile that wrote a status seen at `written`: the last one that began before it
    (Kopf reconciles one execution at a time). Its operator may have seen the Job's Complete condition a few
    milliseconds before this bench's watch did."""
    before = [t for t in starts if written is not None and t <= written]
    return max(before) if before else None


def reconcile_starts(spans: Iterable[Mapping[str, Any]], trace_id: str) -> list[float]:
    return [s["start"] for s in spans if s["trace_id"] == trace_id and s["name"] == "reconcile"]


def request_start(spans: Iterable[Mapping[str, Any]], trace_id: str) -> float | None:
    """When the API received the POST: the start of the trace's root (its SERVER span, without a parent)."""
    roots = [s["start"] for s in spans if s["trace_id"] == trace_id and not s["parent_id"]]
    return min(roots) if roots else None


def final(obj: Mapping[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed", "TimedOut", "Cancelled")


def select_model_marks(
    client: Mapping[str, float],
    spans: Sequence[Mapping[str, Any]],
    trace_id: str,
    execution_events: Sequence[Mapping[str, Any]],
    job_events: Sequence[Mapping[str, Any]],
    pod: Mapping[str, float | None],
    shop_calls: Sequence[float],
) -> dict[str, float | None]:
    """Every mark of one REST select-model (SELECT_MODEL_STAGES), from what was recorded for it: this client's
    `post_sent` and `poll_answered`, the collected spans, the watches' events of its execution and Job, its
    pod's marks (pod_marks) and the times the shop was called."""
    job_created = first(job_events, lambda obj: True)
    complete = first(job_events, condition_true("Complete"))
    return {
        "post_sent": client["post_sent"],
        "post_received": request_start(spans, trace_id),
        "execution_created": first(execution_events, lambda obj: True),
        "job_created": job_created,
        **{k: pod[k] for k in ("pod_scheduled", "sandbox_ready", "container_started")},
        "component_returned": after(shop_calls, job_created),
        "kubelet_reported": pod["kubelet_reported"],
        "job_complete": complete,
        "operator_observed": wrote(reconcile_starts(spans, trace_id), first(execution_events, final)),
        "status_written": first(execution_events, final),
        "poll_answered": client["poll_answered"],
    }


def raw_job_marks(
    create_sent: float,
    job_events: Sequence[Mapping[str, Any]],
    pod: Mapping[str, float | None],
    shop_calls: Sequence[float],
) -> dict[str, float | None]:
    job_created = first(job_events, lambda obj: True)
    return {
        "create_sent": create_sent,
        "job_created": job_created,
        **{k: pod[k] for k in ("pod_scheduled", "sandbox_ready", "container_started")},
        "component_returned": after(shop_calls, job_created),
        "kubelet_reported": pod["kubelet_reported"],
        "job_complete": first(job_events, condition_true("Complete")),
    }


def stages(marks: Mapping[str, float | None], order: Sequence[tuple[str, str, str]]) -> dict[str, float | None]:
    """Seconds of each stage (`order`: from mark, to mark, label), keyed by label; None where a mark is missing."""
    seconds: dict[str, float | None] = {}
    for start, end, label in order:
        a, b = marks.get(start), marks.get(end)
        seconds[label] = None if a is None or b is None else b - a
    return seconds


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`th percentile of `values` (the bench's usual)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(runs: Sequence[Mapping[str, float | None]], order: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    """Median and p90 of each stage over `runs` (stages() of each), of the end-to-end time, and the stage
    with the largest median."""
    table: dict[str, dict[str, float | int]] = {}
    for _, _, label in order:
        seen = [s[label] for s in runs if s.get(label) is not None]
        values = [v for v in seen if v is not None]
        if values:
            table[label] = {"p50": statistics.median(values), "p90": percentile(values, 90), "count": len(values)}
    totals = [sum(v for v in s.values() if v is not None) for s in runs if all(v is not None for v in s.values())]
    dominant = max(table, key=lambda label: table[label]["p50"]) if table else None
    return {
        "stages": table,
        "total": {"p50": statistics.median(totals), "p90": percentile(totals, 90)} if totals else None,
        "complete_runs": len(totals),
        "dominant": dominant,
    }


def span_tree(spans: Sequence[Mapping[str, Any]]) -> str:
    """A text tree of one trace's spans: name, service and milliseconds from the trace's start."""
    if not spans:
        return ""
    origin = min(s["start"] for s in spans)
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[Mapping[str, Any]]] = {}
    for s in sorted(spans, key=lambda s: s["start"]):
        parent = s["parent_id"] if s["parent_id"] in ids else ""
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in children.get(parent, []):
            begin, end = 1000 * (s["start"] - origin), 1000 * (s["end"] - origin)
            lines.append(f"{'  ' * depth}{s['name']} [{s['service']}] {begin:.0f} → {end:.0f} ms")
            walk(s["span_id"], depth + 1)

    walk("", 0)
    return "\n".join(lines)


def raw_job_from(run_job: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A raw Job with the run Job's pod (image, command, env, volumes, security): without its owner, the
    operator's and the Job controller's labels, the selector and the trace context."""
    template = copy.deepcopy(dict(run_job["spec"]["template"]))
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    kept = {k: v for k, v in annotations.items() if k != TRACE_ANNOTATION}  # the run's args are one of them
    template["metadata"] = {"labels": {"bench": "raw"}, "annotations": kept}
    for container in template["spec"].get("containers", []):
        container["env"] = [e for e in container.get("env") or [] if e.get("name") != "TRACEPARENT"]
    spec = {k: v for k, v in run_job["spec"].items() if k not in ("selector", "manualSelector", "template")}
    spec["template"] = template
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"bench": "raw"}},
        "spec": spec,
    }


# ---- I/O: the collector, the watches, the node ------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench-breakdown {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Collector:
    """An OTLP/HTTP trace receiver (POST /v1/traces, protobuf) keeping every span as a plain dict."""

    def __init__(self, host: str) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.spans: list[dict[str, Any]] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    for resource in request.resource_spans:
                        names = [a.value.string_value for a in resource.resource.attributes if a.key == "service.name"]
                        for scope in resource.scope_spans:
                            for span in scope.spans:
                                spans.append(
                                    {
                                        "service": names[0] if names else "",
                                        "name": span.name,
                                        "trace_id": span.trace_id.hex(),
                                        "span_id": span.span_id.hex(),
                                        "parent_id": span.parent_span_id.hex(),
                                        "start": span.start_time_unix_nano / 1e9,
                                        "end": span.end_time_unix_nano / 1e9,
                                    }
                                )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://{host}:{self.server.server_port}"


class Watches:
    """Watches of a namespace's executions, Jobs and pods; every event with the time it arrived here."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        from kubernetes import watch

        from schedexec import models

        self.events: dict[str, list[dict[str, Any]]] = {"executions": [], "jobs": [], "pods": []}
        self.stopped = threading.Event()
        serialize = cluster.api.sanitize_for_serialization
        lists = {
            "executions": lambda **kw: cluster.custom.list_namespaced_custom_object(
                models.GROUP, models.VERSION, namespace, models.PLURAL, **kw
            ),
            "jobs": lambda **kw: cluster.batch.list_namespaced_job(namespace, **kw),
            "pods": lambda **kw: cluster.core.list_namespaced_pod(namespace, **kw),
        }
        for kind, lister in lists.items():

            def follow(kind: str = kind, lister: Any = lister) -> None:
                while not self.stopped.is_set():
                    try:
                        for event in watch.Watch().stream(lister, timeout_seconds=60):
                            self.events[kind].append(
                                {"t": time.time(), "type": event["type"], "object": serialize(event["object"])}
                            )
                            if self.stopped.is_set():
                                return
                    except Exception:
                        if self.stopped.is_set():
                            return  # the cluster is going away
                        raise

            threading.Thread(target=follow, daemon=True).start()
        time.sleep(1)  # the watches are open before anything is created

    def of(self, kind: str, match: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
        return [e for e in list(self.events[kind]) if match(e["object"])]


def labelled(key: str, value: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: ((obj.get("metadata") or {}).get("labels") or {}).get(key) == value


def owned_by(uid: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: any(r.get("uid") == uid for r in (obj.get("metadata") or {}).get("ownerReferences") or [])


def named(name: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: (obj.get("metadata") or {}).get("name") == name


def wait(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.1)
    return found


def pod_log(cluster: Any, namespace: str, pod: str) -> str:
    return str(cluster.core.read_namespaced_pod_log(pod, namespace, timestamps=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10, help="REST select-model requests, and raw Jobs")
    parser.add_argument("--quick", action="store_true", help="3 of each, results into a temporary directory")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from the saved results")
    options = parser.parse_args()
    n = 3 if options.quick else options.requests
    if options.render:
        sys.path[:0] = [str(REPO / "bench")]
        import provenance

        saved, trace = json.loads(RESULTS.read_text()), json.loads(TRACE.read_text())
        section = report(saved, trace["tree"], provenance.describe(saved["code"]))
        REPORT.write_text(with_section(REPORT.read_text(), section))
        return 0

    sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "examples")]
    import provenance
    import remote_services

    from node import wait_for_the_node
    from schedexec import tracing
    from schedexec_devcluster import binaries
    from schedexec_devcluster.__main__ import CHART_NAMESPACE, CHART_RELEASE, install_chart, node_setup
    from schedexec_devcluster.certs import NODE_IP
    from schedexec_devcluster.controlplane import ControlPlane
    from tests.node import conftest
    from tests.node.support import create_api_tls_secret
    from tests.node.test_real_node import rest_client
    from tests.support import LocalCluster

    wait_for_the_node()
    began, code = time.monotonic(), provenance.code_version()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as state:
        found = binaries.ensure_binaries(build=True)
        plane = ControlPlane(Path(state), binaries=found, node=node_setup(), owner=os.getpid())
        plane.up()
        try:
            collector = Collector(NODE_IP)
            shop_calls: list[float] = []

            class TimedShop(remote_services.Remote):
                def answer(self, method: str, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, Any]:
                    shop_calls.append(time.time())
                    return super().answer(method, path, query, headers)

            shop = remote_services.serve(TimedShop(api_key="demo-key"), host=NODE_IP)
            shop_url = f"http://{NODE_IP}:{shop.server_port}"
            otel = [
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": collector.endpoint},
                {"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "200"},
            ]
            run_template = {"env": [{"name": "PYTHONPROFILEIMPORTTIME", "value": "1"}]}
            values = tuple(conftest.CHART_VALUES)
            json_values = (
                *conftest.CHART_JSON_VALUES,
                f"operator.extraEnv={json.dumps(otel)}",
                f"operator.runPodTemplate={json.dumps(run_template)}",
            )
            cluster = LocalCluster(plane, found.require(binaries.KUBECTL))
            create_api_tls_secret(cluster)
            try:
                install_chart(plane, values, json_values)
            except Exception:
                log(cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout)
                for kind in ("deploy/schedexec", f"deploy/{CHART_RELEASE}-api"):
                    shown = cluster.kubectl("logs", "-n", CHART_NAMESPACE, kind, "--tail=30", check=False)
                    log(shown.stdout + shown.stderr)
                shown = cluster.kubectl("get", "events", "-n", CHART_NAMESPACE, check=False)
                log(shown.stdout[-3000:])
                log("the chart's rollout did not finish in time; waiting for it once more")
                install_chart(plane, values, json_values)
            api = f"deployment/{CHART_RELEASE}-api"
            env = [f"{e['name']}={e['value']}" for e in otel]
            cluster.kubectl("set", "env", "-n", CHART_NAMESPACE, api, *env)
            cluster.kubectl("rollout", "status", "-n", CHART_NAMESPACE, api, "--timeout=180s")
            log(f"real node up, chart installed, tracing to {collector.endpoint} in {time.monotonic() - began:.0f}s")
            namespace = "breakdown"
            cluster.kubectl("create", "namespace", namespace)
            cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "examples/shop/credentials.yaml"))
            cluster.kubectl(
                "create", "role", "shop-secret", "-n", namespace, "--verb=get", "--resource=secrets",
                "--resource-name=shop-credentials",
            )  # fmt: skip
            cluster.kubectl(
                "create", "rolebinding", "shop-secret", "-n", namespace, "--role=shop-secret",
                f"--serviceaccount={namespace}:client",
            )  # fmt: skip
            watches = Watches(cluster, namespace)
            body = {
                "data": {
                    "type": "select-model",
                    "attributes": {"module": "products", "method": "getCategories", "fields": {"shopUrl": shop_url}},
                    "relationships": {"credential": {"data": {"id": "shop-credentials", "type": "credential"}}},
                }
            }
            recorded: list[dict[str, Any]] = []
            with rest_client(cluster, namespace) as http:
                for index in range(n + 1):  # the first warms the API's review cache and the node's image
                    post_sent = time.time()
                    accepted = http.post(
                        "/v2/components/shop/versions/latest/select-model", params={"namespace": namespace}, json=body
                    )
                    assert accepted.status_code == 202, accepted.text
                    location = accepted.headers["Location"]
                    while (polled := http.get(location)).status_code == 200:
                        time.sleep(POLL)
                    poll_answered = time.time()
                    assert polled.status_code == 303, polled.text
                    uid = location.rstrip("/").rsplit("/", 1)[1]
                    recorded.append({"uid": uid, "post_sent": post_sent, "poll_answered": poll_answered})
                    log(f"select-model {index}: 303 after {poll_answered - post_sent:.2f}s")
            time.sleep(2)  # the last spans' batch
            select_models: list[dict[str, Any]] = []
            for item in recorded[1:]:
                uid = item["uid"]
                mine = watches.of("executions", lambda obj, uid=uid: obj["metadata"]["uid"] == uid)
                execution = mine[-1]["object"]
                trace_id = (tracing.of(execution) or "00--").split("-")[1]
                jobs = watches.of("jobs", owned_by(uid))
                job_name = jobs[0]["object"]["metadata"]["name"]
                pods = watches.of("pods", labelled("batch.kubernetes.io/job-name", job_name))
                pod_name = pods[0]["object"]["metadata"]["name"]
                pod = pod_marks(pods, pod_log(cluster, namespace, pod_name))
                client = {"post_sent": item["post_sent"], "poll_answered": item["poll_answered"]}
                marks = select_model_marks(client, collector.spans, trace_id, mine, jobs, pod, shop_calls)
                select_models.append({"uid": uid, "trace_id": trace_id, "job": job_name, "marks": marks})
            run_job = cluster.api.sanitize_for_serialization(
                cluster.batch.read_namespaced_job(select_models[0]["job"], namespace)
            )
            raw_jobs: list[dict[str, Any]] = []
            for index in range(n + 1):
                name = f"raw-{index}"
                create_sent = time.time()
                cluster.batch.create_namespaced_job(namespace, raw_job_from(run_job, name))
                jobs = wait(f"Job {name} complete", lambda name=name: watches.of("jobs", named(name)) and first(
                    watches.of("jobs", named(name)), condition_true("Complete")))  # fmt: skip
                jobs = watches.of("jobs", named(name))
                pods = watches.of("pods", labelled("batch.kubernetes.io/job-name", name))
                pod = pod_marks(pods, pod_log(cluster, namespace, pods[0]["object"]["metadata"]["name"]))
                marks = raw_job_marks(create_sent, jobs, pod, shop_calls)
                if index:  # as for the select-models, the first one warms up
                    raw_jobs.append({"job": name, "marks": marks})
                log(f"raw Job {index}: complete after {(marks['job_complete'] or 0) - create_sent:.2f}s")
            watches.stopped.set()
        finally:
            plane.down()
    shop.shutdown()
    collector.server.shutdown()

    sm_stages = [stages(r["marks"], SELECT_MODEL_STAGES) for r in select_models]
    raw_stages = [stages(r["marks"], RAW_JOB_STAGES) for r in raw_jobs]
    example = [s for s in collector.spans if s["trace_id"] == select_models[0]["trace_id"]]
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": provenance.machine(),
        "kubernetes": binaries.KUBERNETES_VERSION,
        "code": code,
        "command": " ".join(["python bench/select_model_breakdown.py", *sys.argv[1:]]),
        "seconds": time.monotonic() - began,
        "requests": n,
        "spans": [s for s in collector.spans if s["trace_id"] in {r["trace_id"] for r in select_models}],
        "select_model": {
            "runs": select_models,
            "stages": sm_stages,
            "summary": summary(sm_stages, SELECT_MODEL_STAGES),
        },
        "raw_job": {"runs": raw_jobs, "stages": raw_stages, "summary": summary(raw_stages, RAW_JOB_STAGES)},
    }
    trace = {"trace_id": select_models[0]["trace_id"], "tree": span_tree(example).splitlines(), "spans": example}
    out = Path(tempfile.mkdtemp(prefix="bench-breakdown-out-")) if options.quick else None
    results_path, trace_path, report_path = (
        (out / RESULTS.name, out / TRACE.name, out / REPORT.name) if out else (RESULTS, TRACE, REPORT)
    )
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    trace_path.write_text(json.dumps(trace, indent=2) + "\n")
    existing = REPORT.read_text() if REPORT.exists() else ""
    report_path.write_text(with_section(existing, report(results, trace["tree"], provenance.describe(code))))
    log(f"wrote {report_path}, {results_path} and {trace_path}")
    return 0


# ---- the report ---------------------------------------------------------------------------------------------------


def with_section(document: str, section: str) -> str:
    """`document` with its SECTION (to the end) replaced by `section`, or `section` appended."""
    kept = document.split(SECTION, 1)[0].rstrip("\n")
    return f"{kept}\n\n{section}" if kept else section


def table(summarized: Mapping[str, Any]) -> str:
    rows = [f"| {label} | {v['p50']:.3f} | {v['p90']:.3f} |" for label, v in summarized["stages"].items() if v["count"]]
    total = summarized["total"]
    if total:
        rows.append(f"| **end to end** | **{total['p50']:.3f}** | **{total['p90']:.3f}** |")
    return "| stage | p50 (s) | p90 (s) |\n| --- | --- | --- |\n" + "\n".join(rows)


def report(results: Mapping[str, Any], tree: Sequence[str], code: str) -> str:
    m = results["machine"]
    sm, raw = results["select_model"]["summary"], results["raw_job"]["summary"]
    return f"""{SECTION}

Made by `{results["command"]}` ([bench/select_model_breakdown.py](../bench/select_model_breakdown.py),
`make bench-breakdown`) on {results["date"]} in {results["seconds"] / 60:.0f} min: {m["cpus"]} CPUs,
kernel {m["kernel"]}, Kubernetes {results["kubernetes"]}. Code: {code}. Raw data:
[bench/results/breakdown-node.json](../bench/results/breakdown-node.json); one trace:
[bench/results/breakdown-trace.json](../bench/results/breakdown-trace.json).

{results["requests"]} REST `select-model` requests of the shop example (`getCategories`), one after the
other on the idle node (after one warm-up request), through the chart's REST API (HTTPS, a token),
tracing to an OTLP collector in the bench; then {results["requests"]} raw Jobs made from a run's own
Job (same image, command, env and pod spec). Where each mark comes from: the bench's client (POST sent,
303 received, polling every {POLL * 1000:.0f} ms), the traces (the API's request span: POST received; the
`reconcile` span that wrote the final status, which the operator does once the Job is Complete: operator
observed; it may begin a few ms before the bench's watch sees the Job Complete), watches of the
namespace (event arrival, ms: execution and Job created, PodScheduled, PodReadyToStartContainers, the
container's terminated state, the Job's Complete, the execution's final phase), the run's log (the runs have
`PYTHONPROFILEIMPORTTIME=1`: the interpreter's first import line, stamped by containerd in ns: Python
running) and the shop the component calls (served by the bench: its call arrived; the component returns
right after). Medians and p90 of each stage (a stage's p50s need not add up to the end-to-end p50).

### REST select-model ({sm["complete_runs"]} complete of {results["requests"]})

{table(sm)}

Largest stage: **{sm["dominant"]}**.

### Raw Job, same image and pod ({raw["complete_runs"]} complete of {results["requests"]})

{table(raw)}

Largest stage: **{raw["dominant"]}**.

### One select-model's trace

```
{chr(10).join(tree)}
```

{analysis(sm, raw)}"""


def analysis(sm: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    """What would cut the time, with this run's medians (the stages named in SELECT_MODEL_STAGES)."""

    def p50(summarized: Mapping[str, Any], label: str) -> str:
        stage = summarized["stages"].get(label)
        return f"{stage['p50']:.2f} s" if stage else "not measured"

    reported, complete = "container exit → kubelet reported", "Job controller: pod succeeded → Job Complete"
    sandbox, started = "kubelet: scheduled → sandbox ready", "kubelet + containerd: sandbox → Python running"
    component = "Python start, runner, component → component returned"
    ours = [
        "client → API (TLS, token review)",
        "API: POST → execution created",
        "operator: execution → Job created",
        "Job Complete → operator reconciles",
        "operator: reconcile → status written",
        "status written → poll answered (303)",
    ]
    schedexec = sum(sm["stages"][label]["p50"] for label in ours if label in sm["stages"])
    return f"""### What would cut it

Almost all of a select-model's time is Kubernetes' own, and a raw Job with the same pod spends it too:

- **The Job controller** (pod succeeded → Job Complete: {p50(sm, complete)} for the select-models,
  {p50(raw, complete)} for the raw Jobs). kube-controller-manager's Job controller syncs a Job at most
  once per second after a pod update (its pod-update batch period) and removes its tracking finalizer
  before it counts the pod. The operator waits for it because `runs.observe` takes a run's end from the
  Job's `Complete`/`Failed` conditions. Reading a run's outcome from its pod as soon as the container
  terminated with exit code 0 and a complete envelope in its termination message (the Job then cannot
  start another pod: backoffLimit and the pod failure policy only act on failures) would cut this stage
  from the select-model's path: the operator's path, a change in `runs.py`.
- **The kubelet's status reports**: container exit → kubelet reported {p50(sm, reported)} (raw:
  {p50(raw, reported)}). The kubelet learns of a container's exit from its generic PLEG, which relists
  containers every second; event-driven PLEG (the `EventedPLEG` feature gate, with containerd's CRI
  container events enabled) reports it as it happens. The pod sandbox ({p50(sm, sandbox)}: the pause
  container and the pod's network) is paid by every pod; the container start ({p50(sm, started)}) too.
- **Image and Python start**: from Python running to the component's answer {p50(sm, component)}
  (interpreter start, the runner's imports, reading the run's arguments and credentials, the component's
  one HTTP call). A smaller image changes nothing once it is on the node; fewer imports at start would
  shave tens of milliseconds.
- **schedexec itself**: the REST API (request to execution created), the operator (execution to Job;
  Job Complete to the status written) and the poll together take about {schedexec:.2f} s of the
  median select-model (sum of those stages' medians).
"""


if __name__ == "__main__":
    sys.exit(main())
