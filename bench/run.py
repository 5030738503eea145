"""`make bench`: schedexec's benchmarks on the local control plane, each against a baseline of the same run.

This machine is shared and noisy, so every figure is reported next to a
baseline measured in the same run (a ratio), with the machine, the Kubernetes
version and the command. Benchmarks measure and report; they pass or fail
nothing. Results: docs/benchmarks.md (report, plots) and bench/results/*.json
(raw data).

Scenarios (sizes are flags; the defaults are the issue's):
1. throughput: N single-run executions created at once, creation → all
   Succeeded, against N equivalent Jobs created directly (same pods, same
   node agent);
2. API efficiency: requests the operator made per execution in (1), from the
   API server's audit log, writes and reads apart;
3. latency: executions created at a steady rate, creation → Job created
   (audit-log timestamps); lateness of polling runs (start - due); timeout
   detection delay (completedAt - deadline);
4. scale: many executions waiting between polls: operator RSS and CPU while
   nothing is due, then a share of them made due and their lateness;
5. REST poll: wrk against /v2/exec/poll/{id} with the scale executions
   cached, against /healthz of the same server.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from schedexec import decisions, models, runs
from schedexec.reconciler import status_document
from schedexec_devcluster import binaries
from schedexec_devcluster.__main__ import apply_crds, node_agent_process
from schedexec_devcluster.controlplane import ControlPlane, pick_free_ports
from schedexec_runner import envelope

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
REPORT = REPO / "docs" / "benchmarks.md"
NAMESPACE = "bench"
DONE_SCRIPT = 'printf \'%s\' \'{"v":1,"outcome":"done","result":1}\' > "$NODE_AGENT_POD_ROOT/dev/termination-log"'
SLEEP_SCRIPT = "sleep 3600"
SET_LABEL = "bench.schedexec.io/set"
"""Label naming an execution's scenario set (its name up to the last '-')."""
CLOCK = time.time


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def stamp(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Bench:
    def __init__(self, state: Path, parallelism: int) -> None:
        found = binaries.ensure_binaries()
        self.kubectl_path = found.require(binaries.KUBECTL)
        self.plane = ControlPlane(state, binaries=found, audit=True)
        agent = node_agent_process(self.plane)
        self.plane.extra_processes.append(
            type(agent)(agent.name, (*agent.command, "--parallelism", str(parallelism)), agent.env)
        )
        self.plane.up()
        apply_crds(self.plane, found)
        self.admin = config.new_client_from_config(config_file=str(self.plane.kubeconfig_path))
        self.kubectl("create", "namespace", NAMESPACE)
        self.operator_kubeconfig = self.service_account("operator")
        client_kubeconfig = self.service_account("client")
        self.api = config.new_client_from_config(config_file=str(client_kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.operator: subprocess.Popen[bytes] | None = None
        self.operator_settings: dict[str, str] = {}
        self.metrics_port = 0

    def kubectl(self, *args: str) -> str:
        return subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.plane.kubeconfig_path), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def service_account(self, name: str) -> Path:
        """A cluster-admin ServiceAccount, so that the audit log attributes its requests."""
        self.kubectl("create", "serviceaccount", name, "-n", NAMESPACE)
        self.kubectl(
            "create",
            "clusterrolebinding",
            f"bench-{name}",
            "--clusterrole=cluster-admin",
            f"--serviceaccount={NAMESPACE}:{name}",
        )
        token = self.kubectl("create", "token", name, "-n", NAMESPACE, "--duration=6h").strip()
        admin = yaml.safe_load(self.plane.kubeconfig_path.read_text())
        path = self.plane.state_dir / f"{name}.kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": admin["clusters"],
                    "current-context": "sa",
                    "users": [{"name": "sa", "user": {"token": token}}],
                    "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}],
                }
            )
        )
        return path

    def start_operator(self, **settings: str) -> None:
        self.stop_operator()
        self.operator_settings = settings
        self.metrics_port = pick_free_ports(1)[0]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.operator_kubeconfig),
            "SCHEDEXEC_METRICS_PORT": str(self.metrics_port),
            "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{pick_free_ports(1)[0]}/healthz",
            "SCHEDEXEC_LOG_LEVEL": "warning",
            **settings,
        }
        log_file = (self.plane.state_dir / "logs" / "bench-operator.log").open("ab")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "schedexec.cli", "operator"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        time.sleep(3)

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.terminate()
            self.operator.wait(timeout=30)
            self.operator = None

    def execution(self, name: str, script: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": name, "labels": {SET_LABEL: name.rsplit("-", 1)[0]}},
            "spec": {
                "component": {"image": "local/exec", "command": ["/bin/sh", "-c", script]},
                "method": "bench",
                **spec,
            },
        }

    def create_all(self, bodies: list[dict[str, Any]], create: Callable[[dict[str, Any]], Any]) -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, bodies))

    def create_execution(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, NAMESPACE, models.PLURAL, body)

    def executions(self, prefix: str) -> list[dict[str, Any]]:
        """The executions named `prefix`*, selected by label: the API server serializes only those
        (listing all 11,000 of the scale scenario every few seconds would load it, and skew what it measures)."""
        selector = f"{SET_LABEL}={prefix.rstrip('-')}" if prefix else ""
        items = self.custom.list_namespaced_custom_object(
            models.GROUP, models.VERSION, NAMESPACE, models.PLURAL, label_selector=selector
        )["items"]
        return [i for i in items if i["metadata"]["name"].startswith(prefix)]

    def wait(self, what: str, probe: Callable[[], bool], timeout: float, interval: float = 2.0) -> None:
        """Poll `probe` (each probe lists objects: not too often, or the bench loads the API server itself)."""
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)

    def clear(self) -> None:
        """Delete every execution and Job of the namespace and wait until they are gone."""
        self.kubectl("delete", "sx,jobs", "--all", "-n", NAMESPACE, "--wait=false")
        self.wait(
            "an empty namespace",
            lambda: (
                not self.executions("")
                and not self.batch.list_namespaced_job(NAMESPACE).items
                and not self.core.list_namespaced_pod(NAMESPACE).items
            ),
            600,
        )

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds so far of each control-plane process and the operator (the node agent with its pods)."""
        pids = {p.name: p.pid for p in self.plane.status().processes if p.alive}
        if self.operator is not None:
            pids["schedexec operator"] = self.operator.pid
        return {name: process_usage(pid, children=True)[1] for name, pid in pids.items()}

    def audit(self) -> Iterator[dict[str, Any]]:
        with (self.plane.state_dir / "logs" / "audit.log").open() as lines:
            for line in lines:
                yield json.loads(line)

    def down(self) -> None:
        self.stop_operator()
        self.plane.down()


# --- scenarios -------------------------------------------------------------------------------------


def throughput(bench: Bench, n: int) -> dict[str, Any]:
    log(f"throughput baseline: {n} Jobs created directly")
    template = bench.execution("x", DONE_SCRIPT)
    job_spec = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {"name": "run", "image": "local/exec", "command": template["spec"]["component"]["command"]}
                    ],
                }
            },
        },
    }
    start, cpu_before = CLOCK(), bench.cpu_by_process()
    bench.create_all(
        [{**job_spec, "metadata": {"name": f"base-{i}"}} for i in range(n)],
        lambda body: bench.batch.create_namespaced_job(NAMESPACE, body),
    )
    bench.wait(
        "the baseline Jobs",
        lambda: sum(1 for j in bench.batch.list_namespaced_job(NAMESPACE).items if j.status.succeeded) >= n,
        3600,
    )
    baseline, baseline_cpu = CLOCK() - start, cpu_spent(cpu_before, bench.cpu_by_process())
    bench.clear()
    log(f"throughput: {n} single-run executions")
    audit_from = CLOCK()
    start, cpu_before = CLOCK(), bench.cpu_by_process()
    bench.create_all([bench.execution(f"tp-{i}", DONE_SCRIPT) for i in range(n)], bench.create_execution)
    bench.wait(
        "the executions",
        lambda: sum(1 for e in bench.executions("tp-") if (e.get("status") or {}).get("phase") == "Succeeded") >= n,
        3600,
    )
    ours, ours_cpu = CLOCK() - start, cpu_spent(cpu_before, bench.cpu_by_process())
    bench.wait(
        "the finished runs' Jobs to be cleaned up", lambda: not bench.batch.list_namespaced_job(NAMESPACE).items, 600
    )
    time.sleep(2)
    efficiency = api_efficiency(bench, audit_from, n)
    bench.clear()
    return {
        "n": n,
        "baseline_seconds": baseline,
        "ours_seconds": ours,
        "baseline_per_second": n / baseline,
        "ours_per_second": n / ours,
        "ratio": (n / ours) / (n / baseline),
        "cpu_seconds": {"baseline": baseline_cpu, "schedexec": ours_cpu},
        "api": efficiency,
    }


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def api_efficiency(bench: Bench, since: float, n: int) -> dict[str, Any]:
    operator_user = f"system:serviceaccount:{NAMESPACE}:operator"
    counts: Counter[tuple[str, str]] = Counter()
    for event in bench.audit():
        if event.get("stage") != "ResponseComplete" or event["user"]["username"] != operator_user:
            continue
        if stamp(event["requestReceivedTimestamp"]) < since:
            continue
        ref = event.get("objectRef", {})
        resource = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
        counts[(event["verb"], resource)] += 1
    writes = {f"{verb} {resource}": c for (verb, resource), c in counts.items() if verb in WRITE_VERBS}
    reads = {f"{verb} {resource}": c for (verb, resource), c in counts.items() if verb not in WRITE_VERBS}
    event_writes = sum(c for k, c in writes.items() if k.endswith(" events"))
    return {
        "writes_per_execution": sum(writes.values()) / n,
        "writes_per_execution_without_events": (sum(writes.values()) - event_writes) / n,
        "reads_per_execution": sum(reads.values()) / n,
        "writes": writes,
        "reads": reads,
    }


def latency(bench: Bench, rate: float, seconds: int, polling: int, timeouts: int) -> dict[str, Any]:
    n = int(rate * seconds)
    log(f"latency: {n} executions at {rate}/s")
    since = CLOCK()
    for i in range(n):
        due = since + i / rate
        if (pause := due - CLOCK()) > 0:
            time.sleep(pause)
        bench.create_execution(bench.execution(f"lat-{i}", DONE_SCRIPT))
    bench.wait(
        "the latency executions",
        lambda: sum(1 for e in bench.executions("lat-") if (e.get("status") or {}).get("phase") == "Succeeded") >= n,
        900,
    )
    created: dict[str, float] = {}
    jobs: dict[str, float] = {}
    for event in bench.audit():
        ref = event.get("objectRef", {})
        if (
            event.get("stage") != "ResponseComplete"
            or event["verb"] != "create"
            or event.get("responseStatus", {}).get("code") not in (200, 201)
        ):
            continue
        name = ref.get("name") or ""
        if ref.get("resource") == models.PLURAL:
            created[name] = stamp(event["stageTimestamp"])
        elif ref.get("resource") == "jobs":
            jobs[name] = stamp(event["stageTimestamp"])
    to_job = [
        jobs[f"lat-{i}-r1"] - created[f"lat-{i}"] for i in range(n) if f"lat-{i}-r1" in jobs and f"lat-{i}" in created
    ]
    bench.clear()

    log(f"lateness: {polling} polling sequences of 5 runs, 2 s apart")
    countdown = (
        'i=$(sed -n \'s/.*"left":\\([0-9]*\\).*/\\1/p\' "$SCHEDEXEC_ARGS_FILE"); '
        'if [ "${i:-0}" -gt 0 ]; then printf \'{"v":1,"outcome":"schedule","nextRunInSeconds":2,'
        '"args":{"left":%d}}\' $((i-1)); else printf \'{"v":1,"outcome":"done","result":0}\'; fi '
        '> "$NODE_AGENT_POD_ROOT/dev/termination-log"'
    )
    bench.create_all(
        [bench.execution(f"poll-{i}", countdown, args={"left": 4}) for i in range(polling)], bench.create_execution
    )
    log(f"timeout detection: {timeouts} executions with timeoutSeconds 5 that run 1 hour")
    bench.create_all(
        [bench.execution(f"to-{i}", SLEEP_SCRIPT, timeoutSeconds=5, runTimeoutSeconds=5) for i in range(timeouts)],
        bench.create_execution,
    )
    bench.wait(
        "the polling sequences",
        lambda: (
            sum(1 for e in bench.executions("poll-") if (e.get("status") or {}).get("phase") == "Succeeded") >= polling
        ),
        900,
    )
    bench.wait(
        "the timeouts",
        lambda: (
            sum(1 for e in bench.executions("to-") if (e.get("status") or {}).get("phase") == "TimedOut") >= timeouts
        ),
        300,
    )
    lateness = []
    for execution in bench.executions("poll-"):
        history = execution["status"]["history"]
        for before, after in itertools.pairwise(history):
            lateness.append(stamp(after["startedAt"]) - stamp(before["finishedAt"]) - 2.0)
    detection = [stamp(e["status"]["completedAt"]) - stamp(e["status"]["deadline"]) for e in bench.executions("to-")]
    bench.clear()
    return {
        "rate": rate,
        "n": n,
        "creation_to_job": summary(to_job),
        "lateness": summary(lateness),
        "timeout_detection": summary(detection),
        "raw": {"creation_to_job": to_job, "lateness": lateness, "timeout_detection": detection},
    }


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def process_usage(pid: int, children: bool = False) -> tuple[float, float]:
    """(RSS in MB, CPU seconds so far) of `pid`, with its reaped children's if asked, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(f) for f in fields[11 : 15 if children else 13]) / ticks
    rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024  # type: ignore[union-attr]
    return rss, cpu


AT_SCRIPT = (
    'at=$(sed -n \'s/.*"at":\\([0-9]*\\).*/\\1/p\' "$SCHEDEXEC_ARGS_FILE"); '
    'if [ -n "$at" ]; then d=$((at - $(date +%s))); [ $d -lt 0 ] && d=0; '
    'printf \'{"v":1,"outcome":"schedule","nextRunInSeconds":%d,"args":{}}\' $d; '
    'else printf \'{"v":1,"outcome":"done","result":0}\'; fi > "$NODE_AGENT_POD_ROOT/dev/termination-log"'
)
"""Run 1 schedules run 2 at the absolute time args.at (epoch seconds); run 2 is done."""


def waiting_status(body: dict[str, Any], now: dt.datetime, next_run_in: int) -> dict[str, Any]:
    """The status the operator writes once run 1 scheduled the next run in `next_run_in` s, made by the
    operator's own decisions (run 1 started, then its schedule outcome recorded)."""
    execution = models.ScheduledExecution.model_validate(body)
    first = decisions.decide(execution, runs.MISSING, now, slot_free=True)
    started = execution.model_copy(update={"status": first.status})
    outcome = runs.RunObservation(runs.RunState.SUCCEEDED, envelope=envelope.schedule(next_run_in, {}), exit_code=0)
    waiting = decisions.decide(started, outcome, now + dt.timedelta(seconds=1), slot_free=True)
    return status_document(waiting.status)


def scale(bench: Bench, n: int, idle_seconds: int, fire: int, fire_window: float) -> dict[str, Any]:
    """`n` executions waiting between polls, the operator measured idle, then `fire` more made due meanwhile.

    Running `n` first runs through the node agent would take ~n/7 s here, so the waiting state is written
    with the operator stopped (status exactly as the operator writes it after a run 1 that scheduled the next
    in 2 h); the operator is then started and loads them like after a restart."""
    log(f"scale: {n} executions waiting 2 h for their next run (status seeded, operator stopped)")
    bench.stop_operator()
    bench.create_all(
        [bench.execution(f"sc-{i}", AT_SCRIPT, timeoutSeconds=14400) for i in range(n)], bench.create_execution
    )
    now = dt.datetime.now(dt.UTC)

    def seed(body: dict[str, Any]) -> None:
        body["status"] = waiting_status(body, now, 7200)
        name = body["metadata"]["name"]
        bench.custom.replace_namespaced_custom_object_status(
            models.GROUP, models.VERSION, NAMESPACE, models.PLURAL, name, body
        )

    bench.create_all(bench.executions("sc-"), seed)
    since = CLOCK()
    bench.start_operator(**bench.operator_settings)
    assert bench.operator is not None
    loaded = settle(bench.operator.pid)
    rss0, cpu0 = process_usage(bench.operator.pid)
    log(f"scale: operator settled after {loaded:.1f}s; measuring it idle for {idle_seconds}s")
    time.sleep(idle_seconds)
    rss1, cpu1 = process_usage(bench.operator.pid)
    startup = api_efficiency(bench, since, n)
    result: dict[str, Any] = {
        "n": n,
        "seeded": True,
        "load_seconds": loaded,
        "writes_while_loading": sum(startup["writes"].values()),
        "rss_mb": max(rss0, rss1),
        "cpu_share": (cpu1 - cpu0) / idle_seconds,
        "seconds": idle_seconds,
    }
    log(f"scale: {fire} more executions due within {fire_window}s while the {n} wait")
    before = lateness_histogram(bench)
    start = int(CLOCK()) + 60 + fire // 5  # their run 1 (through the node agent, ~7/s here) done before run 2 is due
    bench.create_all(
        [
            bench.execution(f"fire-{i}", AT_SCRIPT, args={"at": start + int(i * fire_window / fire)})
            for i in range(fire)
        ],
        bench.create_execution,
    )
    bench.wait(
        "the due executions",
        lambda: (
            sum(1 for e in bench.executions("fire-") if (e.get("status") or {}).get("phase") == "Succeeded") >= fire
        ),
        3600,
        interval=15,  # each probe lists every execution: rarely, so the bench does not load the API server
    )
    after = lateness_histogram(bench)
    # each fire-* execution started two runs: run 1 (due at creation) and run 2 (due at args.at)
    delta = {bound: after.get(bound, 0) - before.get(bound, 0) for bound in after}
    result["fire"] = {
        "n": fire,
        "window_seconds": fire_window,
        "lateness_buckets": delta,
        "p50_at_most": bucket_quantile(delta, 0.5),
        "p99_at_most": bucket_quantile(delta, 0.99),
    }
    return result


def settle(pid: int, window: float = 5.0, share: float = 0.05, timeout: float = 600) -> float:
    """Seconds until the process used under `share` of a core over a `window`: done loading."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        cpu0 = process_usage(pid)[1]
        time.sleep(window)
        if (process_usage(pid)[1] - cpu0) / window < share:
            return time.monotonic() - began - window
    raise TimeoutError("the operator never went idle")


def lateness_histogram(bench: Bench) -> dict[float, float]:
    """Cumulative bucket counts of schedexec_scheduling_lateness_seconds from the operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{bench.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets = {}
    for match in re.finditer(r'schedexec_scheduling_lateness_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)', text):
        buckets[float(match.group(1))] = float(match.group(2))
    return buckets


def bucket_quantile(cumulative: dict[float, float], q: float) -> float:
    """The smallest bucket bound holding a fraction q of the observations."""
    total = cumulative.get(float("inf"), 0)
    for bound in sorted(cumulative):
        if total and cumulative[bound] >= q * total:
            return bound
    return float("nan")


REST_CONNECTIONS = (10, 50)
"""wrk connections: 10 (latency at a moderate concurrency) and 50 (saturation)."""


def rest_poll(bench: Bench, seconds: int, cached: int) -> dict[str, Any]:
    """wrk on loopback: a cached poll against /healthz on the same server, at each of REST_CONNECTIONS."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    if not bench.executions("sc-"):  # run alone: fill the cache with executions the (stopped) operator leaves be
        bench.stop_operator()
        log(f"rest: creating {cached} executions to cache")
        bench.create_all([bench.execution(f"sc-{i}", DONE_SCRIPT) for i in range(cached)], bench.create_execution)
    port = pick_free_ports(1)[0]
    env = {
        **os.environ,
        "KUBECONFIG": str(bench.operator_kubeconfig),
        "SCHEDEXEC_API_PORT": str(port),
        "SCHEDEXEC_API_HOST": "127.0.0.1",
        "SCHEDEXEC_API_ACCESS_LOG": "false",
    }
    log_file = (bench.plane.state_dir / "logs" / "bench-api.log").open("ab")
    api = subprocess.Popen(
        [sys.executable, "-m", "schedexec.cli", "api"], env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        bench.wait("the API", lambda: _ok(f"http://127.0.0.1:{port}/healthz"), 120)
        cached_count = len(bench.executions(""))
        token = bench.kubectl("create", "token", "client", "-n", NAMESPACE).strip()
        uid = bench.executions("sc-")[0]["metadata"]["uid"]
        results: dict[str, Any] = {"runs": []}
        endpoints = (("baseline /healthz", "/healthz"), ("poll", f"/v2/exec/poll/{uid}"))
        for connections, (name, path) in itertools.product(REST_CONNECTIONS, endpoints):
            out = subprocess.run(
                [
                    "wrk",
                    "-t2",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-H",
                    f"Authorization: Bearer {token}",
                    f"http://127.0.0.1:{port}{path}",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results["runs"].append({"endpoint": name, "connections": connections, **parse_wrk(out)})
        results["cached_executions"] = cached_count
        return results
    finally:
        api.terminate()
        api.wait(timeout=15)


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def parse_wrk(output: str) -> dict[str, Any]:
    """requests/s and latency percentiles from `wrk --latency` output (raw tail kept if unparsable)."""
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}

    def number(pattern: str) -> str | None:
        match = re.search(pattern, output)
        return None if match is None else match.group(1)

    def ms(percent: str) -> float:
        text = number(rf"\n\s*{percent}%\s+([\d.]+(?:us|ms|s|m))") or ""
        match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
        return float("nan") if match is None else float(match.group(1)) * units[match.group(2)]

    non2xx = number(r"Non-2xx or 3xx responses:\s+(\d+)")
    return {
        "requests_per_second": float(number(r"Requests/sec:\s+([\d.]+)") or "nan"),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": int(non2xx) if non2xx else 0,
        "raw": output[-1500:],
    }


# --- report ----------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kubernetes": binaries.KUBERNETES_VERSION,
        "etcd": binaries.ETCD_VERSION,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def plot(results: dict[str, Any], folder: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = []
    raw = results.get("latency", {}).get("raw", {})
    for key, title in (
        ("creation_to_job", "creation → Job created"),
        ("lateness", "polling lateness (start - due)"),
        ("timeout_detection", "timeout detection delay"),
    ):
        values = sorted(raw.get(key, []))
        if not values:
            continue
        figure, axes = plt.subplots(figsize=(5, 3))
        axes.plot(values, [i / len(values) for i in range(1, len(values) + 1)])
        axes.set_xlabel("seconds")
        axes.set_ylabel("fraction")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        name = f"bench-{key}.png"
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        names.append(name)
    return names


def wrk_cells(w: dict[str, Any]) -> str:
    return f"{w['requests_per_second']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | {w['non_2xx']}"


def report(results: dict[str, Any], command: str, plots: list[str]) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/run.py); raw data in `bench/results/latest.json`. Every figure comes "
        "from one run on the machine below, next to a baseline measured in the same run: this machine is shared "
        "and noisy, so compare ratios, not absolute numbers.",
        "",
        f"- machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}",
        f"- Kubernetes {m['kubernetes']} (kube-apiserver, kube-controller-manager), etcd {m['etcd']}, the local "
        "node agent (pods run as local processes)",
        f"- run: {m['date']}, command: `{command}`",
        "",
    ]
    if "throughput" in results:
        t = results["throughput"]
        api = t["api"]
        lines += [
            "## Throughput and API efficiency",
            "",
            f"{t['n']} single-run executions created at once, creation to all Succeeded, against {t['n']} "
            "equivalent Jobs created directly (same pod command, same node agent).",
            "",
            "| | seconds | per second |",
            "| --- | --- | --- |",
            f"| baseline: Jobs | {t['baseline_seconds']:.1f} | {t['baseline_per_second']:.2f} |",
            f"| schedexec | {t['ours_seconds']:.1f} | {t['ours_per_second']:.2f} |",
            "",
            f"**Ratio schedexec / baseline: {t['ratio']:.2f}** (target ≥ 0.5).",
            "",
        ]
        if "cpu_seconds" in t:
            base_cpu, ours_cpu = t["cpu_seconds"]["baseline"], t["cpu_seconds"]["schedexec"]
            lines += [
                "Where the machine's CPU went (CPU seconds per process over each phase; the node agent includes "
                "the pods it ran):",
                "",
                "| process | baseline | schedexec |",
                "| --- | --- | --- |",
                *[
                    f"| {name} | {base_cpu.get(name, 0):.1f} | {ours_cpu[name]:.1f} |"
                    for name in sorted(ours_cpu, key=lambda k: -ours_cpu[k])
                ],
                f"| total | {sum(base_cpu.values()):.1f} | {sum(ours_cpu.values()):.1f} |",
                "",
            ]
        lines += [
            f"API requests by the operator per execution (audit log): **{api['writes_per_execution']:.2f} writes** "
            f"({api['writes_per_execution_without_events']:.2f} without Events; target ≤ 4), "
            f"{api['reads_per_execution']:.2f} reads.",
            "",
            "| request | count |",
            "| --- | --- |",
            *[f"| {k} | {v} |" for k, v in sorted({**api["writes"], **api["reads"]}.items())],
            "",
        ]
    if "latency" in results:
        lat = results["latency"]
        lines += [
            "## Latency",
            "",
            f"{lat['n']} executions created at {lat['rate']}/s.",
            "",
            "| measure | count | p50 s | p99 s | max s | target |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for key, title, target in (
            ("creation_to_job", "creation → Job created", ""),
            ("lateness", "polling lateness (start - nextRunAt)", "p99 < 1 s"),
            ("timeout_detection", "timeout detection (completedAt - deadline)", "p99 < 1 s"),
        ):
            s = lat[key]
            lines.append(f"| {title} | {s['count']} | {s['p50']:.3f} | {s['p99']:.3f} | {s['max']:.3f} | {target} |")
        lines += [""] + [f"![{p}]({p})" for p in plots] + [""]
    if "scale" in results:
        s = results["scale"]
        lines += [
            "## Scale",
            "",
            f"{s['n']} executions waiting between polls (each run 1 scheduled the next in 2 hours); the operator "
            f"process measured over {s['seconds']} s while nothing was due."
            + (
                " Their waiting status was written with the operator stopped, exactly as the operator writes it "
                "after such a run 1 (made by `schedexec.decisions`); running 10,000 first runs through the node "
                f"agent would take ~25 min here. The operator then loaded them like after a restart: settled in "
                f"{s['load_seconds']:.1f} s, making {s['writes_while_loading']} writes."
                if s.get("seeded")
                else ""
            ),
            "",
            "| measure | value | target |",
            "| --- | --- | --- |",
            f"| operator RSS | {s['rss_mb']:.0f} MB | ≤ 250 MB |",
            f"| operator CPU | {100 * s['cpu_share']:.1f} % of a core | ≤ 5 % |",
            "",
            f"Then {s['fire']['n']} more executions were made due within {s['fire']['window_seconds']:.0f} s "
            f"while the {s['n']} waited; lateness of their runs (the operator's "
            "`schedexec_scheduling_lateness_seconds` histogram, so bounds of buckets): "
            f"p50 ≤ {s['fire']['p50_at_most']} s, p99 ≤ {s['fire']['p99_at_most']} s (target p99 < 1 s).",
            "",
        ]
    if "rest" in results:
        r = results["rest"]
        if "skipped" in r:
            lines += ["## REST poll endpoint", "", f"Not measured: {r['skipped']}.", ""]
        else:
            lines += [
                "## REST poll endpoint",
                "",
                f"wrk on loopback, 2 threads, with {r['cached_executions']} executions in the watch-fed cache, "
                "bearer token (TokenReview and SubjectAccessReview answers cached). "
                "Target: ≥ 2,000 req/s at p99 ≤ 20 ms.",
                "",
                "| connections | endpoint | requests/s | p50 ms | p99 ms | non-2xx/3xx | poll / baseline |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for connections in sorted({run["connections"] for run in r["runs"]}):
                pair = {run["endpoint"]: run for run in r["runs"] if run["connections"] == connections}
                base, poll = pair["baseline /healthz"], pair["poll"]
                ratio = poll["requests_per_second"] / base["requests_per_second"]
                lines.append(f"| {connections} | baseline `/healthz` | {wrk_cells(base)} | |")
                lines.append(f"| {connections} | `GET /v2/exec/poll/{{id}}` | {wrk_cells(poll)} | {ratio:.2f} |")
            lines.append("")
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in results["notes"]], ""]
    return "\n".join(lines)


def write(results: dict[str, Any], command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    REPORT.write_text(report(results, command, plot(results, REPORT.parent)))


def main() -> int:
    parser = argparse.ArgumentParser(description="schedexec benchmarks on the local control plane")
    parser.add_argument("--executions", type=int, default=1000, help="throughput: executions (and baseline Jobs)")
    parser.add_argument("--rate", type=float, default=10.0, help="latency: executions created per second")
    parser.add_argument("--seconds", type=int, default=30, help="latency: how long to create them")
    parser.add_argument("--polling", type=int, default=20, help="lateness: polling sequences of 5 runs")
    parser.add_argument("--timeouts", type=int, default=20, help="timeout detection: executions")
    parser.add_argument("--scale", type=int, default=10000, help="scale: executions waiting between polls")
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--fire", type=int, default=1000, help="scale: executions made due while the others wait")
    parser.add_argument("--fire-window", type=float, default=100.0, help="scale: seconds over which they are due")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--parallelism", type=int, default=16, help="node agent: pods at once")
    parser.add_argument("--only", nargs="*", default=["throughput", "latency", "scale", "rest"])
    options = parser.parse_args()
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    state = Path(tempfile.mkdtemp(prefix="schedexec-bench-"))
    results: dict[str, Any] = {"machine": machine(), "notes": []}
    bench = Bench(state, options.parallelism)
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "throughput": lambda: throughput(bench, options.executions),
        "latency": lambda: latency(bench, options.rate, options.seconds, options.polling, options.timeouts),
        "scale": lambda: scale(bench, options.scale, options.idle_seconds, options.fire, options.fire_window),
        "rest": lambda: rest_poll(bench, options.wrk_seconds, options.scale),
    }
    try:
        bench.start_operator(SCHEDEXEC_MAX_RUNNING="100000", SCHEDEXEC_MIN_INTERVAL_SECONDS="1", SCHEDEXEC_WORKERS="8")
        for name, scenario in scenarios.items():
            if name in options.only:
                results[name] = scenario()
                write(results, command)  # after each scenario: an interrupted run keeps what it measured
    finally:
        bench.down()
    log(f"wrote {REPORT} and {RESULTS / 'latest.json'}; cluster state in {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
