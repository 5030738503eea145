"""`make bench-node`: schedexec against raw Jobs on the real node, same image, same pods; pod start latency.

The node-agent benchmarks (bench/run.py) measure the operator and the API
server; this one measures what users see on a real kubelet. On a fresh
real-node cluster with the chart's operator running as a pod:

- throughput: N single-run executions created at once, creation → all
  Succeeded, against N Jobs created directly from the very manifests the
  operator would create (runs.job_manifest, owner references removed), so
  both sides run the same image with the same pod spec on the same node.
  Rounds alternate baseline and schedexec; each round's ratio is
  baseline time / schedexec time (1.0 = as fast as raw Jobs).
- pod start latency: Job created → container started, one Job at a time
  (an idle node: what one run waits for), timed by this client from the
  create call to the first pod status that shows the container started
  (polled every 50 ms, so it includes the kubelet's status report); and, from
  the API's timestamps (one-second resolution), over every pod of the
  throughput rounds (a burst of N at once on this machine: mostly queueing).

Results: bench/results/node.json and a section in docs/benchmarks-node.md.
It reports; it passes or fails nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config

from schedexec import models, runs
from schedexec_devcluster import binaries
from schedexec_devcluster.__main__ import install_chart, node_setup
from schedexec_devcluster.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "node.json"
REPORT = REPO / "docs" / "benchmarks-node.md"
IMAGE = "ghcr.io/schedexec/test-component:dev"
SPEC = {"component": {"image": IMAGE}, "method": "countdown", "args": {"left": 0}}


def log(message: str) -> None:
    print(f"[bench-node {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def stamp(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def raw_job(namespace: str, index: int) -> dict[str, Any]:
    """The Job the operator would create for a one-run execution, without its owner (nothing to own it)."""
    execution = models.ScheduledExecution.model_validate(
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": f"raw-{index}", "namespace": namespace, "uid": str(uuid.uuid4())},
            "spec": SPEC,
        }
    )
    manifest = runs.job_manifest(execution, 1, SPEC["args"], runs.PodDefaults())
    manifest["metadata"].pop("ownerReferences", None)
    return manifest


class Node:
    def __init__(self, state: Path) -> None:
        found = binaries.ensure_binaries()
        self.plane = ControlPlane(state, binaries=found, node=node_setup(), owner=os.getpid())
        self.plane.up()
        install_chart(self.plane, ["operator.minIntervalSeconds=1", "operator.maxRunning=200"])
        api = config.new_client_from_config(config_file=str(self.plane.kubeconfig_path))
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def namespace(self, name: str) -> str:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(sa.metadata.name == "default" for sa in self.core.list_namespaced_service_account(name).items):
                return name
            time.sleep(0.2)
        raise RuntimeError(f"no default ServiceAccount in {name}")

    def start_latencies(self, namespace: str) -> list[float]:
        """Job (or execution) created → container started, for every pod of the namespace."""
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
        while True:
            jobs = self.batch.list_namespaced_job(namespace).items
            if sum(1 for j in jobs if (j.status.succeeded or 0) >= 1) == n:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        latencies = self.start_latencies(namespace)
        self.core.delete_namespace(namespace)
        return {"seconds": seconds, "start_latencies": latencies}

    def sequential_latencies(self, n: int) -> list[float]:
        """One Job at a time: create it, poll until its container has started, delete it."""
        namespace = self.namespace("latency")
        latencies = []
        for index in range(n):
            started = time.monotonic()
            self.batch.create_namespaced_job(namespace, raw_job(namespace, index))
            while True:
                pods = self.core.list_namespaced_pod(
                    namespace, label_selector=f"batch.kubernetes.io/job-name=raw-{index}-r1"
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

    def schedexec(self, n: int, round_: int) -> dict[str, Any]:
        namespace = self.namespace(f"sx-{round_}")
        latencies: dict[str, float] = {}
        started = time.monotonic()
        for index in range(n):
            body = {
                "apiVersion": models.API_VERSION,
                "kind": models.KIND,
                "metadata": {"name": f"sx-{index}", "namespace": namespace},
                "spec": SPEC,
            }
            self.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)
        while True:
            # pods exist only until the operator deletes the finished Job: sample latencies while they do
            for pod in self.core.list_namespaced_pod(namespace).items:
                statuses = pod.status.container_statuses or []
                state = statuses[0].state if statuses else None
                began = (state.terminated or state.running) if state else None
                if began is not None and began.started_at is not None:
                    latencies[pod.metadata.name] = stamp(began.started_at) - stamp(pod.metadata.creation_timestamp)
            items = self.custom.list_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL)
            phases = [(i.get("status") or {}).get("phase") for i in items["items"]]
            if phases.count("Succeeded") == n:
                break
            if any(p in ("Failed", "TimedOut") for p in phases):
                raise RuntimeError(f"an execution failed: {phases}")
            time.sleep(0.5)
        seconds = time.monotonic() - started
        self.core.delete_namespace(namespace)
        return {"seconds": seconds, "pod_start_latencies": list(latencies.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100, help="per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=100, help="Jobs started one at a time")
    options = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-node-") as state:
        node = Node(Path(state))
        log(f"real node up with the chart in {time.monotonic() - started:.0f}s")
        rounds = []
        try:
            sequential = node.sequential_latencies(options.latency_runs)
            log(f"{len(sequential)} Jobs one at a time: p50 {percentile(sequential, 50):.2f}s")
            for round_ in range(options.rounds):
                base = node.baseline(options.executions, round_)
                log(f"round {round_}: {options.executions} raw Jobs in {base['seconds']:.1f}s")
                ours = node.schedexec(options.executions, round_)
                log(f"round {round_}: {options.executions} executions in {ours['seconds']:.1f}s")
                rounds.append({"baseline": base, "schedexec": ours, "ratio": base["seconds"] / ours["seconds"]})
        finally:
            node.plane.down()
    job_latencies = [v for r in rounds for v in r["baseline"]["start_latencies"]]
    pod_latencies = [v for r in rounds for v in r["schedexec"]["pod_start_latencies"]]
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "executions": options.executions,
        "rounds": rounds,
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
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
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    REPORT.write_text(report(results, " ".join(["make bench-node", *sys.argv[1:]])))
    log(f"ratio (raw Jobs time / schedexec time), median of {options.rounds}: {results['ratio_median']:.2f}")
    return 0


def report(results: dict[str, Any], command: str) -> str:
    rows = "\n".join(
        f"| {i + 1} | {r['baseline']['seconds']:.1f} | {r['schedexec']['seconds']:.1f} | {r['ratio']:.2f} |"
        for i, r in enumerate(results["rounds"])
    )
    job = results["job_created_to_container_started"]
    seq = results["one_at_a_time_job_created_to_container_started"]
    pod = results["pod_created_to_container_started_schedexec"]
    return f"""# Benchmarks on the real node

Made by `{command}` ([bench/node.py](../bench/node.py)) on {results["date"]}:
{results["machine"]["cpus"]} CPUs, kernel {results["machine"]["kernel"]}. Raw data:
[bench/results/node.json](../bench/results/node.json). This machine is shared and noisy: read
the ratios, measured side by side in the same run, not the absolute times.

## Throughput: {results["executions"]} single-run executions against {results["executions"]} raw Jobs

Both sides run the same image (`{IMAGE}`) with the same pod spec (the Job
manifest the operator creates) on the same node; the operator runs in-cluster
from the Helm chart. Ratio = raw Jobs' time / schedexec's time (1.0: as fast
as creating the Jobs yourself).

| round | raw Jobs (s) | schedexec (s) | ratio |
| --- | --- | --- | --- |
{rows}

Median ratio: **{results["ratio_median"]:.2f}**.

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
