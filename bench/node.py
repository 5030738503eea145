"""`make bench-node`: schedexec against raw Jobs on the real node, same image, same pods; pod start latency.

The node-agent benchmarks (bench/run.py) measure the operator and the API
server; this one measures what users see on a real kubelet. On a fresh
real-node cluster with the chart's operator running as a pod:

- throughput: N single-run executions created at once, creation → all
  Succeeded, against N Jobs created directly from the very manifests the
  operator would create (manifests.job_manifest, without the owner reference and
  the operator's labels, so that its label-selected watches do not see them),
  so both sides run the same image with the same pod spec on the same node.
  Rounds alternate baseline and schedexec; both sides are awaited by the same
  loop (pods and the side's objects listed every POLL seconds). Each round's
  ratio is baseline time / schedexec time, i.e. schedexec's throughput / the
  raw Jobs' (1.0 = as fast as raw Jobs); the report gives the median.
- pod start latency: Job created → container started, one Job at a time
  (an idle node: what one run waits for), timed by this client from the
  create call to the first pod status that shows the container started
  (polled every 50 ms, so it includes the kubelet's status report); and, from
  the API's timestamps (one-second resolution), over every pod of the
  throughput rounds (a burst of N at once on this machine: mostly queueing).

The report states the commit (and whether the tree was dirty: the images are
built from the working tree), the chart values the bench set, and the
operator's settings as the running operator read them. There is one real node
per machine: if another cluster holds it, the bench waits for it.

Results: bench/results/node.json and docs/benchmarks-node.md (`--quick`: small
sizes, both into a temporary directory). It reports; it passes or fails nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import provenance
from kubernetes import client, config
from select_model_breakdown import SECTION

from schedexec import manifests, models
from schedexec.settings import OperatorSettings
from schedexec_devcluster import binaries
from schedexec_devcluster.__main__ import CHART_NAMESPACE, install_chart
from schedexec_devcluster.binaries import REPO_ROOT, ensure_node_binaries
from schedexec_devcluster.controlplane import ControlPlane, NodeSetup
from schedexec_devcluster.images import ensure_images
from schedexec_devcluster.node import NodeLayout, owner

REPO = provenance.REPO
RESULTS = REPO / "bench" / "results" / "node.json"
REPORT = REPO / "docs" / "benchmarks-node.md"
IMAGE = "ghcr.io/schedexec/test-component:dev"
SPEC = {"component": {"image": IMAGE}, "method": "countdown", "args": {"left": 0}}
CHART_VALUES = ("operator.minIntervalSeconds=1", "operator.maxRunning=200")
"""What the bench sets on the chart (no run limit below the rounds' size); the rest is the chart's defaults."""
POLL = 0.5
"""Seconds between the wait loop's lists, on both sides."""
RESULT_SIZES = (("small", None), ("100 KiB", 100), ("1000 KiB", 1000))
"""The result-size scenario: getMetaModel of the test component's wide table (tests/components), whose
schema is about this many KiB as JSON (1000 KiB: the largest that fits the default 1 MiB limit with
its envelope); small: the throughput rounds' countdown."""


def log(message: str) -> None:
    print(f"[bench-node {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def stamp(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def raw_job(namespace: str, index: int) -> dict[str, Any]:
    """The Job the operator would create for a one-run execution, without its owner (nothing to own it) and
    without the operator's labels (its watches select them: it would spend work on the baseline's Jobs)."""
    execution = models.ScheduledExecution.model_validate(
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": f"raw-{index}", "namespace": namespace, "uid": str(uuid.uuid4())},
            "spec": SPEC,
        }
    )
    manifest = manifests.job_manifest(execution, 1, SPEC["args"], OperatorSettings().pod_defaults())
    manifest["metadata"].pop("ownerReferences", None)
    manifest["metadata"]["labels"] = {"bench": "raw"}
    manifest["spec"]["template"]["metadata"]["labels"] = {"bench": "raw"}
    return manifest


def wait_for_the_node(timeout: float = 3600) -> None:
    """One real node per machine: wait while another cluster holds it (never stop it: it is someone's)."""
    deadline, said = time.monotonic() + timeout, False
    while (holder := owner()) is not None and NodeLayout(holder).root.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the real node is still held by {holder}")
        if not said:
            log(f"the real node is held by {holder}; waiting for it")
            said = True
        time.sleep(15)


class Node:
    def __init__(self, state: Path) -> None:
        found = binaries.ensure_binaries()
        images = ensure_images(REPO_ROOT)
        self.images = {image.name: image.key[:16] for image in images}
        self.kubectl_path = found.require(binaries.KUBECTL)
        setup = NodeSetup(ensure_node_binaries(), tuple(image.archive for image in images))
        self.plane = ControlPlane(state, binaries=found, node=setup, owner=os.getpid())
        self.plane.up()
        install_chart(self.plane, CHART_VALUES)
        api = config.new_client_from_config(config_file=str(self.plane.kubeconfig_path))
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def operator_settings(self) -> dict[str, Any]:
        """The operator's Deployment: its image and environment, and every setting as the running operator's
        own settings class reads it (through kubectl exec; the environment alone if that fails)."""
        deployment = self.apps.list_namespaced_deployment(CHART_NAMESPACE).items[0]
        container = next(c for c in deployment.spec.template.spec.containers if c.name == "operator")
        env = {e.name: e.value if e.value is not None else "(from the pod)" for e in container.env or []}
        program = "from schedexec.settings import OperatorSettings; print(OperatorSettings().model_dump_json())"
        command = [str(self.kubectl_path), "--kubeconfig", str(self.plane.kubeconfig_path), "exec", "-n"]
        command += [CHART_NAMESPACE, f"deploy/{deployment.metadata.name}", "-c", "operator", "--"]
        effective: dict[str, Any] | str = "not read"
        for python in ("python3", "python"):
            done = subprocess.run([*command, python, "-c", program], capture_output=True, text=True, timeout=60)
            if done.returncode == 0:
                effective = json.loads(done.stdout)
                break
            effective = f"not read: {(done.stderr or done.stdout).strip()[:200]}"
        return {"chart_values": list(CHART_VALUES), "image": container.image, "env": env, "effective": effective}

    def namespace(self, name: str) -> str:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(sa.metadata.name == "default" for sa in self.core.list_namespaced_service_account(name).items):
                return name
            time.sleep(0.2)
        raise RuntimeError(f"no default ServiceAccount in {name}")

    def await_done(self, namespace: str, done: Callable[[], bool]) -> dict[str, float]:
        """List pods (pod created → container started, sampled while the pods exist: the operator deletes a
        finished run's Job) and check `done`, every POLL seconds, the same for both sides."""
        latencies: dict[str, float] = {}
        while True:
            for pod in self.core.list_namespaced_pod(namespace).items:
                statuses = pod.status.container_statuses or []
                state = statuses[0].state if statuses else None
                began = (state.terminated or state.running) if state else None
                if began is not None and began.started_at is not None:
                    latencies[pod.metadata.name] = stamp(began.started_at) - stamp(pod.metadata.creation_timestamp)
            if done():
                return latencies
            time.sleep(POLL)

    def start_latencies(self, namespace: str) -> list[float]:
        """Job created → container started, for every pod of the namespace."""
        jobs = {
            j.metadata.name: stamp(j.metadata.creation_timestamp)
            for j in self.batch.list_namespaced_job(namespace).items
        }
        latencies = []
        for pod in self.core.list_namespaced_pod(namespace).items:
            job = (pod.metadata.labels or {}).get("batch.kubernetes.io/job-name")
            state = pod.status.container_statuses[0].state if pod.status.container_statuses else None
            started = (state.terminated or state.running) if state else None
            if job in jobs and started is not None and started.started_at is not None:
                latencies.append(stamp(started.started_at) - jobs[job])
        return latencies

    def baseline(self, n: int, round_: int) -> dict[str, Any]:
        namespace = self.namespace(f"raw-{round_}")
        started = time.monotonic()
        for index in range(n):
            self.batch.create_namespaced_job(namespace, raw_job(namespace, index))

        def done() -> bool:
            jobs = self.batch.list_namespaced_job(namespace).items
            return sum(1 for j in jobs if (j.status.succeeded or 0) >= 1) == n

        pod_latencies = self.await_done(namespace, done)
        seconds = time.monotonic() - started
        latencies = self.start_latencies(namespace)
        self.core.delete_namespace(namespace)
        return {"seconds": seconds, "start_latencies": latencies, "pod_start_latencies": list(pod_latencies.values())}

    def sequential_latencies(self, n: int) -> list[float]:
        """One Job at a time: create it, poll until its container has started, delete it."""
        namespace = self.namespace("latency")
        latencies = []
        for index in range(n):
            started = time.monotonic()
            job = raw_job(namespace, index)
            self.batch.create_namespaced_job(namespace, job)
            while True:
                pods = self.core.list_namespaced_pod(
                    namespace, label_selector=f"batch.kubernetes.io/job-name={job['metadata']['name']}"
                )
                statuses = [s for p in pods.items for s in (p.status.container_statuses or [])]
                if any(s.state.running or s.state.terminated for s in statuses):
                    break
                if time.monotonic() - started > 120:
                    raise RuntimeError(f"Job {index}: no container started in 120 s")
                time.sleep(0.05)
            latencies.append(time.monotonic() - started)
        self.core.delete_namespace(namespace)
        return latencies

    def schedexec(self, n: int, round_: int, spec: dict[str, Any] = SPEC, prefix: str = "sx") -> dict[str, Any]:
        namespace = self.namespace(f"{prefix}-{round_}")
        started = time.monotonic()
        for index in range(n):
            body = {
                "apiVersion": models.API_VERSION,
                "kind": models.KIND,
                "metadata": {"name": f"sx-{index}", "namespace": namespace},
                "spec": spec,
            }
            self.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)

        def done() -> bool:
            items = self.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL)
            phases = [(i.get("status") or {}).get("phase") for i in items["items"]]
            if any(p in ("Failed", "TimedOut") for p in phases):
                raise RuntimeError(f"an execution failed: {phases}")
            return phases.count("Succeeded") == n

        latencies = self.await_done(namespace, done)
        seconds = time.monotonic() - started
        self.core.delete_namespace(namespace)
        return {"seconds": seconds, "pod_start_latencies": list(latencies.values())}

    def result_costs(self, n: int) -> dict[str, Any]:
        """`n` executions per result size, one size after the other: executions/s, and the CPU the operator
        (its container's process) and kube-apiserver spent on them, per execution."""
        costs: dict[str, Any] = {}
        for label, kib in RESULT_SIZES:
            spec = SPEC if kib is None else {**SPEC, "method": "getMetaModel", "module": "wide", "args": {"kib": kib}}
            before = host_cpu(self.plane.state_dir)
            seen = self.schedexec(n, 0, spec, prefix=f"result-{kib or 0}")
            spent = {name: after - before.get(name, 0.0) for name, after in host_cpu(self.plane.state_dir).items()}
            costs[label] = {
                "kib": kib,
                "seconds": seen["seconds"],
                "per_second": n / seen["seconds"],
                "cpu_ms_per_execution": {name: 1000 * cpu / n for name, cpu in spent.items()},
            }
            log(f"results of {label}: {n} executions in {seen['seconds']:.1f}s")
        return costs


CPU_PROCESSES: dict[str, Callable[[list[str]], bool]] = {
    "schedexec operator": lambda names: names[-2:] == ["schedexec", "operator"],
    "kube-apiserver": lambda names: names[:1] == ["kube-apiserver"],
}
"""Host processes whose CPU the result-size scenario reads, by the base names of their command line: the
operator's container (`... schedexec operator`: there is one real node, so one) and the API server (this
bench's: its command line names the bench's state directory)."""


def host_cpu(state: Path) -> dict[str, float]:
    """CPU seconds (user + system) so far of CPU_PROCESSES, read from /proc on the host."""
    ticks, spent = os.sysconf("SC_CLK_TCK"), dict.fromkeys(CPU_PROCESSES, 0.0)
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        names = [Path(a).name for a in args if a]
        for name, matches in CPU_PROCESSES.items():
            if matches(names) and (name != "kube-apiserver" or any(str(state) in a for a in args)):
                spent[name] += (int(fields[11]) + int(fields[12])) / ticks
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, results into a temporary directory")
    parser.add_argument("--executions", type=int, help="per round and side (default 100; --quick 10)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, help="Jobs started one at a time (default 100; --quick 5)")
    parser.add_argument("--result-runs", type=int, help="executions per result size (default 20; --quick 2)")
    options = parser.parse_args()
    executions = options.executions or (10 if options.quick else 100)
    latency_runs = options.latency_runs or (5 if options.quick else 100)
    result_runs = options.result_runs or (2 if options.quick else 20)
    out = Path(tempfile.mkdtemp(prefix="bench-node-out-")) if options.quick else None
    wait_for_the_node()
    started = time.monotonic()
    code = provenance.code_version()  # the images are built from the working tree as it is now
    with tempfile.TemporaryDirectory(prefix="bench-node-") as state:
        node = Node(Path(state))
        log(f"real node up with the chart in {time.monotonic() - started:.0f}s")
        rounds = []
        try:
            settings = node.operator_settings()
            sequential = node.sequential_latencies(latency_runs)
            log(f"{len(sequential)} Jobs one at a time: p50 {percentile(sequential, 50):.2f}s")
            for round_ in range(options.rounds):
                base = node.baseline(executions, round_)
                log(f"round {round_}: {executions} raw Jobs in {base['seconds']:.1f}s")
                ours = node.schedexec(executions, round_)
                log(f"round {round_}: {executions} executions in {ours['seconds']:.1f}s")
                rounds.append({"baseline": base, "schedexec": ours, "ratio": base["seconds"] / ours["seconds"]})
            result_costs = node.result_costs(result_runs)
        finally:
            node.plane.down()
    job_latencies = [v for r in rounds for v in r["baseline"]["start_latencies"]]
    pod_latencies = [v for r in rounds for v in r["schedexec"]["pod_start_latencies"]]
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": provenance.machine(),
        "kubernetes": binaries.KUBERNETES_VERSION,
        "code": code,
        "images": node.images,
        "settings": settings,
        "command": " ".join(["python bench/node.py", *sys.argv[1:]]),
        "seconds": time.monotonic() - started,
        "executions": executions,
        "rounds": rounds,
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "result_runs": result_runs,
        "result_costs": result_costs,
        "one_at_a_time_job_created_to_container_started": {
            "count": len(sequential),
            "p50": percentile(sequential, 50),
            "p99": percentile(sequential, 99),
            "max": max(sequential),
        },
        "job_created_to_container_started": {
            "count": len(job_latencies),
            "p50": percentile(job_latencies, 50),
            "p99": percentile(job_latencies, 99),
        },
        "pod_created_to_container_started_schedexec": {
            "count": len(pod_latencies),
            "p50": percentile(pod_latencies, 50) if pod_latencies else None,
            "p99": percentile(pod_latencies, 99) if pod_latencies else None,
        },
    }
    results_path, report_path = (out / "node.json", out / "benchmarks-node.md") if out else (RESULTS, REPORT)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    previous = REPORT.read_text() if REPORT.exists() else ""  # keep make bench-breakdown's section
    breakdown = previous[previous.index(SECTION) :] if SECTION in previous else ""
    report_path.write_text(report(results) + (f"\n{breakdown}" if breakdown else ""))
    log(f"ratio (raw Jobs time / schedexec time), median of {options.rounds}: {results['ratio_median']:.2f}")
    log(f"wrote {report_path} and {results_path}")
    return 0


def settings_lines(settings: dict[str, Any]) -> str:
    effective = settings["effective"]
    if isinstance(effective, dict):
        rows = "\n".join(f"| SCHEDEXEC_{k.upper()} | `{json.dumps(v)}` |" for k, v in effective.items())
        source = "as the running operator read them (its own `OperatorSettings`, through `kubectl exec`)"
    else:
        rows = "\n".join(f"| {k} | `{v}` |" for k, v in settings["env"].items())
        source = f"from its Deployment's environment (the effective settings were {effective})"
    values = ", ".join(f"`{v}`" for v in settings["chart_values"])
    return f"""The operator (image `{settings["image"]}`) ran from the Helm chart with {values} (the
rest the chart's defaults). Its settings, {source}:

| setting | value |
| --- | --- |
{rows}"""


def result_lines(results: dict[str, Any]) -> str:
    costs = results["result_costs"]
    small = costs["small"]
    rows = "\n".join(
        f"| {label} | {c['per_second']:.2f} | {c['per_second'] / small['per_second']:.2f} | "
        f"{c['cpu_ms_per_execution']['schedexec operator']:.0f} | {c['cpu_ms_per_execution']['kube-apiserver']:.0f} |"
        for label, c in costs.items()
    )
    return f"""{results["result_runs"]} `getMetaModel` executions per result size at once, one size after the other, on
the same node (the result over 4 KiB comes through the run's log, over 16 KiB it is kept in a ConfigMap;
docs/api.md, "Large results"). CPU from /proc on the host: the operator container's process and kube-apiserver.

| result | executions/s | vs small | operator CPU (ms/execution) | kube-apiserver CPU (ms/execution) |
| --- | --- | --- | --- | --- |
{rows}"""


def report(results: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {i + 1} | {r['baseline']['seconds']:.1f} | {r['schedexec']['seconds']:.1f} | {r['ratio']:.2f} |"
        for i, r in enumerate(results["rounds"])
    )
    job = results["job_created_to_container_started"]
    seq = results["one_at_a_time_job_created_to_container_started"]
    pod = results["pod_created_to_container_started_schedexec"]
    m = results["machine"]
    images = ", ".join(f"`{name}` ({key})" for name, key in results["images"].items())
    return f"""# Benchmarks on the real node

Made by `{results["command"]}` ([bench/node.py](../bench/node.py)) on {results["date"]}
in {results["seconds"] / 60:.0f} min: {m["cpus"]} CPUs, kernel {m["kernel"]}, Kubernetes
{results["kubernetes"]} (kubelet and containerd). Code: {provenance.describe(results["code"])}; images
built from that tree (cache keys): {images}. Raw data:
[bench/results/node.json](../bench/results/node.json). This machine is shared and noisy: read
the ratios, measured side by side in the same run, not the absolute times.

## Throughput: {results["executions"]} single-run executions against {results["executions"]} raw Jobs

Both sides run the same image (`{IMAGE}`) with the same pod spec (the Job
manifest the operator creates, without its owner and labels) on the same node;
the operator runs in-cluster from the Helm chart. Both sides are awaited by the
same loop (pods and the side's objects listed every {POLL:g} s). Ratio = raw
Jobs' time / schedexec's time = schedexec's throughput / the raw Jobs' (1.0:
as fast as creating the Jobs yourself).

| round | raw Jobs (s) | schedexec (s) | ratio |
| --- | --- | --- | --- |
{rows}

Median ratio: **{results["ratio_median"]:.2f}**.

## Large results

{result_lines(results)}

## Settings

{settings_lines(results["settings"])}

## Pod start latency

One Job at a time on the idle node, Job created → container started (this
client's clock, 50 ms polling): p50 **{seq["p50"]:.2f} s**, p99 **{seq["p99"]:.2f} s**
(max {seq["max"]:.2f} s) over {seq["count"]} Jobs.

In the throughput rounds' bursts of {results["executions"]} at once (queueing on 2 cores),
Job created → container started, raw Jobs: p50 {job["p50"]:.0f} s, p99 {job["p99"]:.0f} s over
{job["count"]} pods. Pod created → container started, schedexec's runs: p50
{pod["p50"]:.0f} s, p99 {pod["p99"]:.0f} s over {pod["count"]} pods seen. Kubernetes timestamps
have one-second resolution; the SLO for comparison is p99 ≤ 5 s (image pulls excluded; here the
images are already on the node).
"""


if __name__ == "__main__":
    sys.exit(main())
