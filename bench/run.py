"""`make bench`: schedexec's benchmarks on the local control plane, each against a baseline of the same run.

This machine is shared and noisy, so every figure is reported next to a
baseline measured in the same run (a ratio), with the machine, the Kubernetes
version, the commit (and whether the tree was dirty) and every operator
setting as the operator read it. Benchmarks measure and report; they pass or
fail nothing. Results: docs/benchmarks.md (report, plots) and
bench/results/latest.json (raw data); `--quick` writes both into the run's
temporary directory instead (small sizes, for development).

Scenarios (sizes are flags; the defaults are issue 17's):
1. throughput: in each of 3 repeats, N raw Jobs and N single-run executions
   (the same Job manifest, the same node agent), alternating which goes
   first; each repeat's ratio of throughputs (creation of the first → the
   N-th done, seen through a watch), CPU per process, and the operator's API
   requests per execution from the audit log (writes with Events, reads,
   lists apart). The report gives the median ratio;
2. creation rate: raw Jobs created as fast as the bench can for S seconds:
   Jobs/s accepted by the API server, Jobs/s started by the node agent;
3. lateness steps: polling runs made due at 2, 4, 8, 16 ... runs/s for W
   seconds each (their first runs done before); lateness (start - nextRunAt)
   per step, until p99 is clearly over 1 s or the machine is saturated;
4. latency: executions created at a steady rate, creation → Job created
   (audit-log timestamps); lateness of polling runs (start - due); timeout
   detection delay (completedAt - deadline);
5. scale: many executions waiting between polls, part of them through real
   first runs, the rest seeded with the operator stopped (status written
   exactly as the operator writes it): operator RSS and CPU while nothing is
   due;
6. REST poll: wrk against /v2/exec/poll/{id} with the scale executions
   cached, against /healthz of the same server.
`--render` rewrites docs/benchmarks.md from bench/results/latest.json, with
the real node's ratio from bench/results/node.json (`make bench` runs it
last, after bench/node.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import provenance
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from schedexec import decisions, manifests, models, runs
from schedexec.reconciler import status_document
from schedexec.settings import OperatorSettings
from schedexec_devcluster import binaries
from schedexec_devcluster.__main__ import apply_crds, node_agent_process
from schedexec_devcluster.controlplane import ControlPlane, pick_free_ports
from schedexec_runner import envelope

REPO = provenance.REPO
RESULTS = REPO / "bench" / "results"
REPORT = REPO / "docs" / "benchmarks.md"
NODE_RESULTS = RESULTS / "node.json"
NAMESPACE = "bench"
DONE_SCRIPT = 'printf \'%s\' \'{"v":1,"outcome":"done","result":1}\' > "$NODE_AGENT_POD_ROOT/dev/termination-log"'
SLEEP_SCRIPT = "sleep 3600"
LATER_SCRIPT = (
    'printf \'{"v":1,"outcome":"schedule","nextRunInSeconds":7200,"args":{}}\' '
    '> "$NODE_AGENT_POD_ROOT/dev/termination-log"'
)
"""Run 1 schedules the next run in 2 hours."""
STEP_SCRIPT = (
    'a="$SCHEDEXEC_ARGS_FILE"; d=$(sed -n \'s/.*"d": *\\([0-9]*\\).*/\\1/p\' "$a"); '
    'if [ -n "$d" ]; then printf \'{"v":1,"outcome":"done","result":%d}\' "$d"; '
    'else at=$(sed -n \'s/.*"at": *\\([0-9]*\\).*/\\1/p\' "$a"); d=$((at - $(date +%s))); '
    '[ "$d" -lt 1 ] && d=1; printf \'{"v":1,"outcome":"schedule","nextRunInSeconds":%d,"args":{"d":%d}}\' "$d" "$d"; '
    'fi > "$NODE_AGENT_POD_ROOT/dev/termination-log"'
)
"""Run 1 schedules run 2 at the epoch second args.at, passing the wait it asked for (d) as run 2's args;
run 2 returns d. Run 2 was due at run 1's finishedAt + d (the operator's nextRunAt), so its lateness is
history[1].startedAt - (history[0].finishedAt + result)."""
SET_LABEL = "bench.schedexec.io/set"
"""Label naming an object's scenario set (an execution's name up to the last '-')."""
OPERATOR_SETTINGS = {
    "SCHEDEXEC_MAX_RUNNING": "100000",
    "SCHEDEXEC_MIN_INTERVAL_SECONDS": "1",
    "SCHEDEXEC_WORKERS": "8",
    "SCHEDEXEC_LOG_LEVEL": "warning",
    "SCHEDEXEC_RUN_RETENTION_SECONDS": "0",
}
"""What the bench sets (raw Jobs have no run limit; polling steps below 10 s; quiet logs; runs' Jobs deleted
once recorded, as before issue 27 kept them for their logs, so "creation to its Job deleted" and the waits for
the Jobs to go measure the operator, not the retention); every other setting is the operator's default. The
report lists all of them as the operator read them."""
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


def phase(item: dict[str, Any]) -> str | None:
    return (item.get("status") or {}).get("phase")


def succeeded(item: dict[str, Any]) -> bool:
    return phase(item) == "Succeeded"


def job_succeeded(item: dict[str, Any]) -> bool:
    return int((item.get("status") or {}).get("succeeded") or 0) >= 1


class Bench:
    def __init__(self, state: Path, parallelism: int, code: Path) -> None:
        found = binaries.ensure_binaries()
        self.kubectl_path = found.require(binaries.KUBECTL)
        self.plane = ControlPlane(state, binaries=found, audit=True)
        agent = node_agent_process(self.plane)
        self.plane.extra_processes.append(
            type(agent)(agent.name, (*agent.command, "--parallelism", str(parallelism)), agent.env)
        )
        self.plane.up()
        apply_crds(self.plane, found)
        self.code = code
        self.admin = config.new_client_from_config(config_file=str(self.plane.kubeconfig_path))
        self.kubectl("create", "namespace", NAMESPACE)
        self.operator_kubeconfig = self.service_account("operator")
        client_kubeconfig = self.service_account("client")
        self.api = config.new_client_from_config(config_file=str(client_kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.operator: subprocess.Popen[bytes] | None = None
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

    def code_env(self, **settings: str) -> dict[str, str]:
        """The environment of a schedexec process: the operator's code as copied at the start of the run."""
        path = os.pathsep.join(p for p in (str(self.code), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "KUBECONFIG": str(self.operator_kubeconfig), "PYTHONPATH": path, **settings}

    def operator_env(self) -> dict[str, str]:
        return self.code_env(
            SCHEDEXEC_METRICS_PORT=str(self.metrics_port),
            SCHEDEXEC_LIVENESS_ENDPOINT=f"http://127.0.0.1:{pick_free_ports(1)[0]}/healthz",
            **OPERATOR_SETTINGS,
        )

    def start_operator(self) -> None:
        self.stop_operator()
        self.metrics_port = pick_free_ports(1)[0]
        log_file = (self.plane.state_dir / "logs" / "bench-operator.log").open("ab")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "schedexec.cli", "operator"],
            env=self.operator_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        time.sleep(3)

    def operator_settings(self) -> dict[str, Any]:
        """Every operator setting as the operator's own settings class reads it from the operator's environment."""
        program = "from schedexec.settings import OperatorSettings; print(OperatorSettings().model_dump_json())"
        done = subprocess.run(
            [sys.executable, "-c", program], env=self.operator_env(), capture_output=True, text=True, check=True
        )
        effective: dict[str, Any] = json.loads(done.stdout)
        return effective

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

    def raw_job(self, name: str, defaults: manifests.PodDefaults) -> dict[str, Any]:
        """The Job the operator creates for a single-run execution `name`, without its owner and without the
        operator's labels (so that the operator's label-selected watches do not see it)."""
        body = self.execution(name, DONE_SCRIPT)
        body["metadata"].update(namespace=NAMESPACE, uid="00000000-0000-0000-0000-000000000000")
        manifest = manifests.job_manifest(models.ScheduledExecution.model_validate(body), 1, {}, defaults)
        manifest["metadata"].pop("ownerReferences", None)
        manifest["metadata"]["labels"] = body["metadata"]["labels"]
        manifest["spec"]["template"]["metadata"]["labels"] = body["metadata"]["labels"]
        return manifest

    def create_all(self, bodies: list[dict[str, Any]], create: Callable[[dict[str, Any]], Any]) -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, bodies))

    def create_execution(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, NAMESPACE, models.PLURAL, body)

    def create_job(self, body: dict[str, Any]) -> None:
        self.batch.create_namespaced_job(NAMESPACE, body)

    def executions(self, prefix: str) -> list[dict[str, Any]]:
        """The executions named `prefix`*, selected by label: the API server serializes only those
        (listing all 10,000 of the scale scenario every few seconds would load it, and skew what it measures)."""
        selector = f"{SET_LABEL}={prefix.rstrip('-')}" if prefix else ""
        items = self.custom.list_namespaced_custom_object(
            models.GROUP, models.VERSION, NAMESPACE, models.PLURAL, label_selector=selector
        )["items"]
        return [i for i in items if i["metadata"]["name"].startswith(prefix)]

    def any_left(self, kind: str) -> bool:
        """Whether any object of `kind` (executions, jobs, pods) is left in the namespace (a list of at most 1)."""
        if kind == "executions":
            found = self.custom.list_namespaced_custom_object(
                models.GROUP, models.VERSION, NAMESPACE, models.PLURAL, limit=1
            )["items"]
        elif kind == "jobs":
            found = self.batch.list_namespaced_job(NAMESPACE, limit=1).items
        else:
            found = self.core.list_namespaced_pod(NAMESPACE, limit=1).items
        return bool(found)

    def wait(self, what: str, probe: Callable[[], bool], timeout: float, interval: float = 2.0) -> None:
        """Poll `probe` (each probe lists objects: not too often, or the bench loads the API server itself)."""
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)

    def await_count(
        self, what: str, kind: str, selector: str, done: Callable[[dict[str, Any]], bool], n: int, timeout: float
    ) -> float:
        """The clock time at which `n` objects of `kind` (executions or jobs) selected by `selector` were `done`.

        A watch, not a poll: the time is when the n-th was seen, and its cost to the API server is one more
        watcher of the objects, the same on both sides of a comparison."""
        if kind == "executions":
            lister: Callable[..., Any] = self.custom.list_namespaced_custom_object
            args: tuple[str, ...] = (models.GROUP, models.VERSION, NAMESPACE, models.PLURAL)
        else:
            lister, args = self.batch.list_namespaced_job, (NAMESPACE,)
        deadline = time.monotonic() + timeout
        while True:
            listing = json.loads(lister(*args, label_selector=selector, _preload_content=False).data)
            seen = {i["metadata"]["name"] for i in listing["items"] if done(i)}
            if len(seen) >= n:
                return CLOCK()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}: {len(seen)} of {n}")
            stream = watch.Watch().stream(
                lister,
                *args,
                label_selector=selector,
                resource_version=listing["metadata"]["resourceVersion"],
                timeout_seconds=max(1, int(min(remaining, 120))),
                deserialize=False,
            )
            try:
                for event in stream:
                    item = event.get("object") or {}
                    if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
                        break  # an ERROR (expired resource version) or a BOOKMARK: list again
                    name = item["metadata"]["name"]
                    if event["type"] != "DELETED" and done(item):
                        seen.add(name)
                    else:
                        seen.discard(name)
                    if len(seen) >= n:
                        return CLOCK()
            except (ApiException, KeyError) as exc:
                if isinstance(exc, ApiException) and exc.status != 410:
                    raise
            finally:
                stream.close()

    def clear(self) -> None:
        """Delete every execution and Job of the namespace and wait until they and their pods are gone."""
        self.kubectl("delete", "sx,jobs", "--all", "-n", NAMESPACE, "--wait=false")
        self.wait("an empty namespace", lambda: not any(map(self.any_left, ("executions", "jobs", "pods"))), 900)

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds so far of each control-plane process, the operator (the node agent with its pods) and
        the bench itself (its client calls run on the same machine)."""
        pids = {p.name: p.pid for p in self.plane.status().processes if p.alive}
        if self.operator is not None:
            pids["schedexec operator"] = self.operator.pid
        usage = {name: process_usage(pid, children=True)[1] for name, pid in pids.items()}
        own = os.times()
        usage["bench (client)"] = own.user + own.system
        return usage

    def audit(self, since: float, until: float = math.inf) -> Iterator[dict[str, Any]]:
        """Audit events of requests received in [since, until], from the log and its rotated files."""
        logs = self.plane.state_dir / "logs"
        for path in sorted(logs.glob("audit*.log"), key=lambda p: p.stat().st_mtime):
            if path.stat().st_mtime < since:
                continue
            with path.open() as lines:
                for line in lines:
                    event = json.loads(line)
                    if (
                        event.get("stage") == "ResponseComplete"
                        and since <= stamp(event["requestReceivedTimestamp"]) <= until
                    ):
                        yield event

    def down(self) -> None:
        self.stop_operator()
        self.plane.down()


def process_usage(pid: int, children: bool = False) -> tuple[float, float]:
    """(RSS in MB, CPU seconds so far) of `pid`, with its reaped children's if asked, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(f) for f in fields[11 : 15 if children else 13]) / ticks
    rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024  # type: ignore[union-attr]
    return rss, cpu


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def pod_defaults(settings: dict[str, Any]) -> manifests.PodDefaults:
    """The operator's PodDefaults from its effective settings, built as the operator builds them."""
    return OperatorSettings.model_validate(settings).pod_defaults()


# --- scenarios -------------------------------------------------------------------------------------

FINISHED = {"Succeeded", "Failed", "TimedOut", "Cancelled"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:operator"


def throughput(bench: Bench, n: int, repeats: int, settings: dict[str, Any]) -> dict[str, Any]:
    """`repeats` rounds of N raw Jobs and N single-run executions, alternating which side goes first."""
    defaults = pod_defaults(settings)
    rounds = []
    for repeat in range(repeats):
        order = ("baseline", "schedexec") if repeat % 2 == 0 else ("schedexec", "baseline")
        sides = {}
        for side in order:
            if side == "baseline":
                sides[side] = raw_jobs(bench, n, f"base{repeat}", defaults)
            else:
                sides[side] = single_runs(bench, n, f"tp{repeat}")
            bench.clear()
        ratio = sides["schedexec"]["per_second"] / sides["baseline"]["per_second"]
        log(f"throughput, repeat {repeat + 1} of {repeats}: ratio {ratio:.2f}")
        rounds.append({"order": list(order), **sides, "ratio": ratio})
    total: Counter[str] = Counter()
    for round_ in rounds:
        total.update(round_["schedexec"]["api"]["requests"])

    def per_item(side: str, process: str) -> list[float]:
        return [1000 * r[side]["cpu_seconds"].get(process, 0.0) / n for r in rounds]

    operator_ms = [1000 * r["schedexec"]["operator_cpu_seconds"] / n for r in rounds]
    return {
        "n": n,
        "repeats": repeats,
        "rounds": rounds,
        "ratios": [r["ratio"] for r in rounds],
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "baseline_per_second_median": statistics.median(r["baseline"]["per_second"] for r in rounds),
        "schedexec_per_second_median": statistics.median(r["schedexec"]["per_second"] for r in rounds),
        "operator_cpu_ms_per_execution": operator_ms,
        "operator_cpu_ms_per_execution_median": statistics.median(operator_ms),
        "apiserver_cpu_ms_per_item": {
            "baseline": per_item("baseline", "kube-apiserver"),
            "schedexec": per_item("schedexec", "kube-apiserver"),
        },
        "api": per_execution(total, n * repeats),
    }


def raw_jobs(bench: Bench, n: int, prefix: str, defaults: manifests.PodDefaults) -> dict[str, Any]:
    log(f"throughput: {n} raw Jobs ({prefix})")
    bodies = [bench.raw_job(f"{prefix}-{i}", defaults) for i in range(n)]
    start, cpu_before, busy_before = CLOCK(), bench.cpu_by_process(), provenance.cpu_times()
    bench.create_all(bodies, bench.create_job)
    end = bench.await_count("the raw Jobs", "jobs", f"{SET_LABEL}={prefix}", job_succeeded, n, 3600)
    seconds = end - start
    return {
        "seconds": seconds,
        "per_second": n / seconds,
        "cpu_seconds": cpu_spent(cpu_before, bench.cpu_by_process()),
        "machine_busy": provenance.busy_share(busy_before, provenance.cpu_times()),
    }


def single_runs(bench: Bench, n: int, prefix: str) -> dict[str, Any]:
    log(f"throughput: {n} single-run executions ({prefix})")
    assert bench.operator is not None
    bodies = [bench.execution(f"{prefix}-{i}", DONE_SCRIPT) for i in range(n)]
    start, cpu_before, busy_before = CLOCK(), bench.cpu_by_process(), provenance.cpu_times()
    bench.create_all(bodies, bench.create_execution)
    end = bench.await_count("the executions", "executions", f"{SET_LABEL}={prefix}", succeeded, n, 3600)
    cpu = cpu_spent(cpu_before, bench.cpu_by_process())
    busy = provenance.busy_share(busy_before, provenance.cpu_times())
    # the operator deletes each finished run's Job once it recorded the outcome: part of an execution's cost
    bench.wait("the operator to delete the runs' Jobs", lambda: not bench.any_left("jobs"), 900, interval=1)
    cleaned = CLOCK()
    operator_cpu = process_usage(bench.operator.pid, children=True)[1] - cpu_before["schedexec operator"]
    time.sleep(2)  # the audit log is written asynchronously
    seconds = end - start
    return {
        "seconds": seconds,
        "per_second": n / seconds,
        "cpu_seconds": cpu,
        "machine_busy": busy,
        "cleanup_seconds": cleaned - end,
        "operator_cpu_seconds": operator_cpu,
        "api": per_execution(operator_requests(bench.audit(start, cleaned)), n),
    }


def operator_requests(events: Iterator[dict[str, Any]]) -> Counter[str]:
    """The operator's requests as 'verb resource[/subresource]' → count."""
    counts: Counter[str] = Counter()
    for event in events:
        if event["user"]["username"] != OPERATOR_USER:
            continue
        ref = event.get("objectRef", {})
        resource = ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else "")
        counts[f"{event['verb']} {resource}"] += 1
    return counts


def per_execution(counts: Counter[str], n: int) -> dict[str, Any]:
    """Writes (Events among them), reads, lists and watches, per execution."""

    def total(select: Callable[[str, str], bool]) -> int:
        return sum(c for key, c in counts.items() if select(*key.split(" ", 1)))

    writes = total(lambda verb, _: verb in WRITE_VERBS)
    event_writes = total(lambda verb, resource: verb in WRITE_VERBS and resource == "events")
    return {
        "executions": n,
        "writes_per_execution": writes / n,
        "event_writes_per_execution": event_writes / n,
        "writes_per_execution_without_events": (writes - event_writes) / n,
        "reads_per_execution": total(lambda verb, _: verb not in WRITE_VERBS and verb != "watch") / n,
        "lists_per_execution": total(lambda verb, _: verb == "list") / n,
        "watch_requests": total(lambda verb, _: verb == "watch"),
        "requests": dict(sorted(counts.items())),
    }


def creation_rate(bench: Bench, seconds: float, settings: dict[str, Any], threads: int = 8) -> dict[str, Any]:
    """Raw Jobs created as fast as `threads` client threads can for `seconds`: Jobs/s accepted by the API
    server; Jobs/s whose pod the node agent started meanwhile; and how long until every pod had started."""
    log(f"creation rate: raw Jobs created as fast as possible for {seconds:g} s")
    template = bench.raw_job("cr-0", pod_defaults(settings))
    names = itertools.count()
    accepted: list[float] = []
    refused: Counter[int] = Counter()
    start = CLOCK()
    stop_at = start + seconds

    def creator() -> None:
        while CLOCK() < stop_at:
            body = json.loads(json.dumps(template))
            body["metadata"]["name"] = f"cr-{next(names)}"
            try:
                bench.create_job(body)
                accepted.append(CLOCK())
            except ApiException as exc:
                refused[int(exc.status or 0)] += 1

    cpu_before, busy_before = bench.cpu_by_process(), provenance.cpu_times()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(creator) for _ in range(threads)]:
            future.result()
    cpu, busy = (
        cpu_spent(cpu_before, bench.cpu_by_process()),
        provenance.busy_share(busy_before, provenance.cpu_times()),
    )
    n = len(accepted)
    bench.await_count("the created Jobs", "jobs", f"{SET_LABEL}=cr", job_succeeded, n, 3600)
    pods = json.loads(
        bench.core.list_namespaced_pod(NAMESPACE, label_selector=f"{SET_LABEL}=cr", _preload_content=False).data
    )["items"]
    started = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            state = container.get("state") or {}
            began = (state.get("terminated") or state.get("running") or {}).get("startedAt")
            if began:
                started.append(stamp(began))
    bench.clear()
    started.sort()
    in_window = sum(1 for t in started if t < stop_at)
    first, last = (started[0], started[-1]) if started else (float("nan"), float("nan"))
    return {
        "seconds": seconds,
        "client_threads": threads,
        "accepted": n,
        "refused": dict(refused),
        "accepted_per_second": n / seconds,
        "started_in_window": in_window,
        "all_started_after_seconds": last - start,
        "started_per_second": (len(started) - 1) / (last - first) if last > first else float("nan"),
        "cpu_seconds": cpu,
        "machine_busy": busy,
    }


def lateness_steps(bench: Bench, rates: list[float], window: float, first_run_rate: float) -> dict[str, Any]:
    """Polling runs due at each rate in turn, until lateness p99 is clearly over 1 s (2 s, or over 1 s at two
    rates in a row) or the benchmark's own processes saturated the machine (≥ SATURATED of its cores over the
    window: the machine is shared, and others' work alone must not end the test while lateness is low)."""
    steps: list[dict[str, Any]] = []
    stopped = "every rate measured"
    for rate in rates:
        step = lateness_step(bench, rate, window, first_run_rate)
        steps.append(step)
        p99 = step["lateness"]["p99"]
        p50, busy, ours = step["lateness"]["p50"], step["machine_busy"], own_share(step)
        log(f"lateness at {rate:g} runs/s: p50 {p50:.3f} s, p99 {p99:.3f} s, machine busy {busy:.0%} ({ours:.0%} ours)")
        if p99 >= 2.0 or (p99 >= 1.0 and len(steps) > 1 and steps[-2]["lateness"]["p99"] >= 1.0):
            stopped = f"p99 over 1 s clearly at {rate:g} runs/s"
            break
        if ours >= SATURATED:
            stopped = f"the benchmark saturated the machine at {rate:g} runs/s ({ours:.0%} of its CPU)"
            break
    passing = [s["rate"] for s in steps if s["lateness"]["p99"] < 1.0]
    failing = [s["rate"] for s in steps if s["lateness"]["p99"] >= 1.0]
    return {
        "window_seconds": window,
        "steps": steps,
        "stopped": stopped,
        "highest_rate_p99_under_1s": max(passing, default=None),
        "lowest_rate_p99_over_1s": min(failing, default=None),
    }


SATURATED = 0.9
"""Share of the machine's CPU time the benchmark's processes used over a step's window at which the step test
stops."""


def own_share(step: dict[str, Any]) -> float:
    """The share of the machine's CPU time the benchmark's processes (control plane, node agent and pods,
    operator, bench client) used over a step's window."""
    seconds = step.get("measured_seconds", step.get("window_seconds", 0) + 1)
    return sum(step["cpu_seconds"].values()) / ((os.cpu_count() or 1) * seconds)


def lateness_step(bench: Bench, rate: float, window: float, first_run_rate: float) -> dict[str, Any]:
    """`rate * window` executions whose run 2 is due at `rate` runs/s over `window` seconds from t0.

    Their run 1s run first (at creation, in a warm-up sized by the single-run throughput measured before);
    run 1 asks for the wait that makes run 2 due at its epoch second args.at (`STEP_SCRIPT`), so rate runs
    fall due in each second, at an offset within it set by when run 1 ended."""
    n = max(2, round(rate * window))
    prefix = "step" + f"{rate:g}".replace(".", "p")
    warmup = max(20.0, 1.5 * n / first_run_rate + 10)
    t0 = math.ceil(CLOCK() + warmup)
    log(f"lateness step {rate:g} runs/s: {n} executions, run 2s due from t0 = now + {t0 - CLOCK():.0f} s")
    bench.create_all(
        [bench.execution(f"{prefix}-{i}", STEP_SCRIPT, args={"at": t0 + math.floor(i / rate)}) for i in range(n)],
        bench.create_execution,
    )
    selector = f"{SET_LABEL}={prefix}"
    try:
        bench.await_count(
            "the first runs", "executions", selector, lambda e: phase(e) == "Waiting", n, max(1.0, t0 - 1 - CLOCK())
        )
        not_waiting = 0
    except TimeoutError:
        not_waiting = sum(1 for e in bench.executions(prefix + "-") if phase(e) != "Waiting")
        log(f"lateness step {rate:g} runs/s: {not_waiting} first runs not done at t0")
    time.sleep(max(0.0, t0 - CLOCK()))
    cpu_before, busy_before = bench.cpu_by_process(), provenance.cpu_times()
    time.sleep(window + 1)
    cpu, busy = (
        cpu_spent(cpu_before, bench.cpu_by_process()),
        provenance.busy_share(busy_before, provenance.cpu_times()),
    )
    bench.await_count("the second runs", "executions", selector, lambda e: phase(e) in FINISHED, n, 600 + n)
    lateness, due, failed = [], [], 0
    for execution in bench.executions(prefix + "-"):
        status = execution.get("status") or {}
        history = status.get("history") or []
        if phase(execution) != "Succeeded" or len(history) < 2 or not isinstance(status.get("result"), int):
            failed += 1
            continue
        at = stamp(history[0]["finishedAt"]) + status["result"]
        due.append(at)
        lateness.append(stamp(history[1]["startedAt"]) - at)
    bench.clear()
    span = max(due) - min(due) if len(due) > 1 else float("nan")
    return {
        "rate": rate,
        "n": n,
        "due_span_seconds": span,
        "realized_rate": len(due) / span if span > 0 else float("nan"),
        "first_runs_not_waiting_at_t0": not_waiting,
        "failed": failed,
        "lateness": summary(lateness),
        "late_over_1s": sum(1 for v in lateness if v > 1.0),
        "cpu_seconds": cpu,
        "machine_busy": busy,
        "measured_seconds": window + 1,
        "raw": [round(v, 4) for v in lateness],
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
    for event in bench.audit(since):
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
        elif ref.get("resource") == "jobs" and name.endswith("-r1"):
            jobs[name.rsplit("-", 2)[0]] = stamp(event["stageTimestamp"])  # <execution>-<uid tag>-r1: run 1's Job
    to_job = [jobs[f"lat-{i}"] - created[f"lat-{i}"] for i in range(n) if f"lat-{i}" in jobs and f"lat-{i}" in created]
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


def waiting_status(
    body: dict[str, Any], now: dt.datetime, next_run_in: int, policy: decisions.Policy
) -> dict[str, Any]:
    """The status the operator writes once run 1 scheduled the next run in `next_run_in` s, made by the
    operator's own decisions with its `policy` (run 1 started, then its schedule outcome recorded)."""
    execution = models.ScheduledExecution.model_validate(body)
    first = decisions.decide(execution, runs.MISSING, now, slot_free=True, policy=policy)
    started = execution.model_copy(update={"status": first.status})
    outcome = runs.RunObservation(runs.RunState.SUCCEEDED, envelope=envelope.Schedule(next_run_in, {}), exit_code=0)
    waiting = decisions.decide(started, outcome, now + dt.timedelta(seconds=1), slot_free=True, policy=policy)
    return status_document(waiting.status)


def scale(bench: Bench, n: int, real: int, idle_seconds: int, settings: dict[str, Any]) -> dict[str, Any]:
    """`n` executions waiting 2 h for their next run, `real` of them through real first runs; the operator
    measured while nothing is due.

    The others' waiting state is written with the operator stopped (status exactly as the operator writes it
    after a run 1 that scheduled the next in 2 h, made by `schedexec.decisions`); the operator then loads
    them like after a restart, and the real ones run through it; it is measured idle after both."""
    real = min(real, n)
    seeded = n - real
    log(f"scale: {seeded} executions waiting 2 h for their next run (status seeded, operator stopped)")
    bench.stop_operator()
    bench.create_all(
        [bench.execution(f"sc-{i}", LATER_SCRIPT, timeoutSeconds=14400) for i in range(seeded)],
        bench.create_execution,
    )
    now = dt.datetime.now(dt.UTC)
    policy = OperatorSettings.model_validate(settings).policy()

    def seed(body: dict[str, Any]) -> None:
        body["status"] = waiting_status(body, now, 7200, policy)
        name = body["metadata"]["name"]
        bench.custom.replace_namespaced_custom_object_status(
            models.GROUP, models.VERSION, NAMESPACE, models.PLURAL, name, body
        )

    if seeded:
        bench.create_all(bench.executions("sc-"), seed)
    since = CLOCK()
    bench.start_operator()
    assert bench.operator is not None
    loaded = settle(bench.operator.pid)
    loading = per_execution(operator_requests(bench.audit(since)), max(seeded, 1))
    log(f"scale: operator loaded them in {loaded:.1f} s; {real} executions through real first runs")
    start = CLOCK()
    bench.create_all(
        [bench.execution(f"scr-{i}", LATER_SCRIPT, timeoutSeconds=14400) for i in range(real)],
        bench.create_execution,
    )
    bench.await_count(
        "the real first runs", "executions", f"{SET_LABEL}=scr", lambda e: phase(e) == "Waiting", real, 3600
    )
    first_runs = CLOCK() - start
    bench.wait("the first runs' Jobs to be deleted", lambda: not bench.any_left("jobs"), 900, interval=5)
    settle(bench.operator.pid)
    log(f"scale: {n} executions waiting; measuring the operator idle for {idle_seconds} s")
    rss0, cpu0 = process_usage(bench.operator.pid)
    time.sleep(idle_seconds)
    rss1, cpu1 = process_usage(bench.operator.pid)
    waiting = sum(1 for e in bench.executions("sc-") + bench.executions("scr-") if phase(e) == "Waiting")
    return {
        "n": n,
        "real_first_runs": real,
        "seeded": seeded,
        "waiting_at_end": waiting,
        "load_seconds": loaded,
        "writes_while_loading": round(loading["writes_per_execution"] * max(seeded, 1)),
        "real_first_runs_seconds": first_runs,
        "rss_mb": max(rss0, rss1),
        "cpu_share": (cpu1 - cpu0) / idle_seconds,
        "seconds": idle_seconds,
    }


def settle(pid: int, window: float = 5.0, share: float = 0.05, timeout: float = 600) -> float:
    """Seconds until the process used under `share` of a core over a `window`: done loading."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        cpu0 = process_usage(pid)[1]
        time.sleep(window)
        if (process_usage(pid)[1] - cpu0) / window < share:
            return time.monotonic() - began - window
    raise TimeoutError("the operator never went idle")


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
    env = bench.code_env(
        SCHEDEXEC_API_PORT=str(port),
        SCHEDEXEC_API_HOST="127.0.0.1",
        SCHEDEXEC_API_ACCESS_LOG="false",
        SCHEDEXEC_API_PLAIN_HTTP="true",  # loopback, as before TLS was required: the figures stay comparable
    )
    log_file = (bench.plane.state_dir / "logs" / "bench-api.log").open("ab")
    api = subprocess.Popen(
        [sys.executable, "-m", "schedexec.cli", "api"], env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    try:
        bench.wait("the API", lambda: _ok(f"http://127.0.0.1:{port}/healthz"), 120)
        cached_count = len(bench.executions(""))
        token = bench.kubectl("create", "token", "client", "-n", NAMESPACE, "--audience", "schedexec").strip()
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


def control_plane_flags(bench: Bench) -> dict[str, list[str]]:
    """The flags of each control-plane process that bound its rate (QPS, bursts, parallelism), from /proc."""
    flags = {}
    for process in bench.plane.status().processes:
        if not process.alive:
            continue
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode().split("\0")
        bounds = [a for a in argv if re.search(r"qps|burst|parallelism|max-.*inflight", a)]
        if "--parallelism" in argv:
            bounds = [f"--parallelism={argv[argv.index('--parallelism') + 1]}"]
        if bounds:
            flags[process.name] = bounds
    return flags


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
    steps = results.get("lateness_steps", {}).get("steps", [])
    if steps:
        figure, axes = plt.subplots(figsize=(5, 3))
        rates = [s["rate"] for s in steps]
        for key in ("p50", "p99"):
            axes.plot(rates, [s["lateness"][key] for s in steps], marker="o", label=key)
        axes.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("runs due per second")
        axes.set_ylabel("lateness (s)")
        axes.set_title("polling lateness by due rate")
        axes.legend()
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(folder / "bench-lateness-steps.png", dpi=100)
        plt.close(figure)
        names.append("bench-lateness-steps.png")
    return names


def wrk_cells(w: dict[str, Any]) -> str:
    return f"{w['requests_per_second']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | {w['non_2xx']}"


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def seconds_text(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def median_cpu(rounds: list[dict[str, Any]], side: str) -> dict[str, float]:
    names = {name for r in rounds for name in r[side]["cpu_seconds"]}
    return {name: statistics.median(r[side]["cpu_seconds"].get(name, 0.0) for r in rounds) for name in names}


def summary_rows(results: dict[str, Any], node: dict[str, Any] | None) -> list[str]:
    """Issue 17's figures, one row each: what this run measured against the target."""
    rows = []
    if "ratio_median" in (t := results.get("throughput", {})):
        ratios = ", ".join(f"{r:.2f}" for r in t["ratios"])
        rows.append(
            f"| throughput, {t['n']:,} single-run executions / {t['n']:,} raw Jobs, median of {t['repeats']} "
            f"| **{t['ratio_median']:.2f}** ({ratios}) | ≥ 0.65 | {met(t['ratio_median'] >= 0.65)} |"
        )
        ms = t["operator_cpu_ms_per_execution"]
        rows.append(
            f"| operator CPU per execution (median; creation to its Job deleted) | **{statistics.median(ms):.1f} ms** "
            f"({', '.join(f'{v:.1f}' for v in ms)}) | ≤ 15 ms | {met(statistics.median(ms) <= 15)} |"
        )
        api_ms = t["apiserver_cpu_ms_per_item"]
        rows.append(
            "| kube-apiserver CPU per item (median): raw Job / execution "
            f"| {statistics.median(api_ms['baseline']):.1f} ms / {statistics.median(api_ms['schedexec']):.1f} ms | | |"
        )
        api = t["api"]
        rows.append(
            f"| operator API writes per execution, Events included | **{api['writes_per_execution']:.3f}** "
            f"({api['event_writes_per_execution']:.3f} of them Events) | ≤ 4 "
            f"| {met(api['writes_per_execution'] <= 4)} |"
        )
        rows.append(
            f"| operator API lists per execution | **{api['lists_per_execution']:.3f}** | 0 (no per-run list) "
            f"| {met(api['lists_per_execution'] < 0.01)} |"
        )
        rows.append(f"| operator API reads (get, list) per execution | {api['reads_per_execution']:.2f} | | |")
    steps = results.get("lateness_steps", {})
    rate = results.get("creation_rate", {})
    if steps.get("steps"):
        best = steps["highest_rate_p99_under_1s"]
        best_step = next((s for s in steps["steps"] if s["rate"] == best), None)
        text = (
            f"**{best:g} runs/s** (p99 {best_step['lateness']['p99']:.2f} s)"
            if best_step is not None
            else "**none** of the rates measured"
        )
        over = steps["lowest_rate_p99_over_1s"]
        if over is not None:
            over_step = next(s for s in steps["steps"] if s["rate"] == over)
            text += f"; at {over:g} runs/s p99 {over_step['lateness']['p99']:.2f} s"
        else:
            text += f"; not crossed ({steps['stopped']})"
        if "started_per_second" in rate:
            text += (
                f"; raw Jobs on this machine: {rate['accepted_per_second']:.0f}/s accepted, "
                f"{rate['started_per_second']:.1f}/s started"
            )
        rows.append(
            f"| fire lateness: highest due rate with p99 < 1 s | {text} "
            "| p99 < 1 s at the highest rate the machine sustains | |"
        )
    if "rss_mb" in (s := results.get("scale", {})):
        rows.append(
            f"| {s['n']:,} waiting executions ({s['real_first_runs']:,} through real first runs, "
            f"{s['seeded']:,} seeded): operator RSS | **{s['rss_mb']:.0f} MB** | ≤ 200 MB | {met(s['rss_mb'] <= 200)} |"
        )
        rows.append(
            f"| the same, operator CPU while nothing is due | **{100 * s['cpu_share']:.2f} % of a core** | ≤ 2 % "
            f"| {met(s['cpu_share'] <= 0.02)} |"
        )
    if node is not None:
        same = node.get("date", "") >= results["machine"]["date"]
        node_ratios = ", ".join(f"{r['ratio']:.2f}" for r in node["rounds"])
        when = "this `make bench`" if same else f"an earlier run, {node.get('date')}"
        rows.append(
            f"| real node ([benchmarks-node.md](benchmarks-node.md), {when}): {node['executions']} executions / "
            f"{node['executions']} raw Jobs, same image, median of {len(node['rounds'])} | "
            f"**{node['ratio_median']:.2f}** ({node_ratios}) | report | |"
        )
    return rows


def report(results: dict[str, Any], plots: list[str], node: dict[str, Any] | None) -> str:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/run.py, then bench/node.py for the real node); raw data in "
        "`bench/results/latest.json`. Every figure comes from one run on the machine below, next to a baseline "
        "measured in the same run: this machine is shared and noisy, so compare ratios, not absolute numbers.",
        "",
        f"- machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}",
        f"- Kubernetes {results['kubernetes']} (kube-apiserver, kube-controller-manager), etcd {results['etcd']}, "
        "the local node agent (pods run as local processes)",
        f"- code: {provenance.describe(results['code'])}; the operator ran from a copy of its code taken at the "
        "start of the run",
        f"- run: {m['date']}, command: `{results['command']}`, "
        + ", ".join(f"{name} {seconds_text(s)}" for name, s in results.get("runtimes", {}).items())
        + f" (total {seconds_text(sum(results.get('runtimes', {}).values()))})",
        "",
        "## Issue 17's figures",
        "",
        "| figure | this run | target | met |",
        "| --- | --- | --- | --- |",
        *summary_rows(results, node),
        "",
    ]
    failed = {name: r["error"] for name, r in results.items() if isinstance(r, dict) and "error" in r}
    if failed:
        lines += ["Scenarios that failed in this run:", "", *[f"- {k}: `{v}`" for k, v in failed.items()], ""]
    settings = results["settings"]
    lines += [
        "## Settings",
        "",
        "Every operator setting as the operator read it (its own `OperatorSettings` in its environment); the "
        "bench set the ones in bold, the rest are defaults. Raw Jobs and runs had the same Job manifest "
        "(`manifests.job_manifest` with these settings).",
        "",
        "| setting | value |",
        "| --- | --- |",
    ]
    for key, value in settings["effective"].items():
        variable = f"SCHEDEXEC_{key.upper()}"
        shown = f"`{json.dumps(value)}`"
        lines.append(f"| {'**' + variable + '**' if variable in settings['set_by_bench'] else variable} | {shown} |")
    lines += [
        "",
        "Control plane: "
        + "; ".join(f"{name} `{' '.join(flags)}`" for name, flags in settings["control_plane"].items())
        + ".",
        "",
    ]
    lines += throughput_section(results.get("throughput", {}))
    lines += creation_rate_section(results.get("creation_rate", {}))
    lines += steps_section(results.get("lateness_steps", {}), plots)
    lines += latency_section(results.get("latency", {}), plots)
    lines += scale_section(results.get("scale", {}))
    lines += rest_section(results.get("rest", {}))
    return "\n".join(lines)


def throughput_section(t: dict[str, Any]) -> list[str]:
    if "rounds" not in t:
        return []
    n = t["n"]
    lines = [
        "## Throughput and API efficiency",
        "",
        f"In each of {t['repeats']} repeats, {n:,} raw Jobs (the manifest the operator would create, without its "
        f"owner and labels) and {n:,} single-run executions, created at once by 8 client threads; time from the "
        f"first create to the {n:,}th Job succeeded or execution Succeeded, seen through a watch. The side that "
        "goes first alternates. Ratio = schedexec's throughput / the raw Jobs' in the same repeat.",
        "",
        "| repeat | first | raw Jobs s | Jobs/s | schedexec s | executions/s | ratio | operator CPU ms / execution "
        "| kube-apiserver CPU ms / Job, / execution | machine busy (ours): Jobs, schedexec |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    api_ms = t["apiserver_cpu_ms_per_item"]
    for i, r in enumerate(t["rounds"]):
        b, s = r["baseline"], r["schedexec"]
        lines.append(
            f"| {i + 1} | {r['order'][0]} | {b['seconds']:.1f} | {b['per_second']:.2f} | {s['seconds']:.1f} "
            f"| {s['per_second']:.2f} | {r['ratio']:.2f} | {t['operator_cpu_ms_per_execution'][i]:.1f} "
            f"| {api_ms['baseline'][i]:.1f}, {api_ms['schedexec'][i]:.1f} | {busy_cell(b)}, {busy_cell(s)} |"
        )
    lines += ["", f"**Median ratio: {t['ratio_median']:.2f}** (target ≥ 0.65).", ""]
    base_cpu, ours_cpu = median_cpu(t["rounds"], "baseline"), median_cpu(t["rounds"], "schedexec")
    base_s = statistics.median(r["baseline"]["seconds"] for r in t["rounds"])
    ours_s = statistics.median(r["schedexec"]["seconds"] for r in t["rounds"])
    cores = os.cpu_count() or 1
    lines += [
        "Where the machine's CPU went (CPU seconds per process over each timed phase, median of the repeats; the "
        "node agent includes the pods it ran, the bench its own client calls; the operator's CPU in the "
        "table above also counts the time until it had deleted the runs' Jobs):",
        "",
        "| process | raw Jobs | schedexec |",
        "| --- | --- | --- |",
        *[
            f"| {name} | {base_cpu.get(name, 0):.1f} | {ours_cpu[name]:.1f} |"
            for name in sorted(ours_cpu, key=lambda k: -ours_cpu[k])
        ],
        f"| total | {sum(base_cpu.values()):.1f} | {sum(ours_cpu.values()):.1f} |",
        "",
        f"All processes together kept {sum(base_cpu.values()) / base_s:.2f} of {cores} cores busy for the raw "
        f"Jobs and {sum(ours_cpu.values()) / ours_s:.2f} for schedexec; CPU per item "
        f"{1000 * sum(base_cpu.values()) / n:.0f} ms against {1000 * sum(ours_cpu.values()) / n:.0f} ms "
        f"(ratio {sum(base_cpu.values()) / sum(ours_cpu.values()):.2f}, to compare with the throughput ratio).",
        "",
    ]
    api = t["api"]
    lines += [
        f"API requests by the operator per execution, from the audit log over the {t['repeats']} repeats "
        f"(creation to its Job deleted): **{api['writes_per_execution']:.3f} writes** "
        f"({api['event_writes_per_execution']:.3f} Events, {api['writes_per_execution_without_events']:.3f} "
        f"without; target ≤ 4 with Events), {api['reads_per_execution']:.2f} reads, "
        f"**{api['lists_per_execution']:.3f} lists** (target: no per-run list); watches are the operator's "
        f"long-running ones ({api['watch_requests']} began in these windows).",
        "",
        "| request | count | per execution |",
        "| --- | --- | --- |",
        *[f"| {k} | {v} | {v / api['executions']:.3f} |" for k, v in api["requests"].items()],
        "",
    ]
    return lines


def busy_cell(phase: dict[str, Any]) -> str:
    """A timed phase's machine-wide busy share (others' work included), with the benchmark's own share."""
    ours = sum(phase["cpu_seconds"].values()) / ((os.cpu_count() or 1) * phase["seconds"])
    return f"{phase['machine_busy']:.0%} ({ours:.0%})" if "machine_busy" in phase else f"? ({ours:.0%})"


def creation_rate_section(r: dict[str, Any]) -> list[str]:
    if "accepted_per_second" not in r:
        return []
    refused = f", {sum(r['refused'].values())} refused ({r['refused']})" if r["refused"] else ""
    return [
        "## Raw-Job creation rate",
        "",
        f"What this machine sustains without schedexec: {r['client_threads']} client threads created raw Jobs "
        f"(the same manifest) as fast as they could for {r['seconds']:g} s: **{r['accepted_per_second']:.1f} "
        f"Jobs/s accepted** by the API server ({r['accepted']:,} Jobs{refused}; the bench's own client used "
        f"{r['cpu_seconds'].get('bench (client)', 0):.1f} CPU-s of the machine, which was "
        f"{r['machine_busy']:.0%} busy meanwhile). The Job controller and the node agent then started them at "
        f"**{r['started_per_second']:.1f} Jobs/s** (pods' container startedAt, first to last: one-second "
        f"resolution), the last {r['all_started_after_seconds']:.0f} s after the first create; "
        f"{r['started_in_window']:,} had started within the {r['seconds']:g} s of creating.",
        "",
    ]


def steps_section(s: dict[str, Any], plots: list[str]) -> list[str]:
    if "steps" not in s:
        return []
    lines = [
        "## Fire lateness by due rate",
        "",
        f"Polling runs made due at each rate for {s['window_seconds']:g} s: each execution's run 1 (done before "
        "the window) schedules run 2 at a given epoch second, rate of them per second. Lateness = run 2's "
        "startedAt - its nextRunAt (run 1's finishedAt + the wait it asked for), from the executions' status. "
        "Machine busy: the share of the cores busy over the window, other work on this shared machine "
        f"included (in brackets: the benchmark's own processes). Stopped: {s['stopped']}.",
        "",
        "| due rate (runs/s) | runs | realized (runs / due span) | p50 s | p99 s | max s | runs > 1 s late "
        "| machine busy | operator CPU (% of a core) | first runs late / failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for step in s["steps"]:
        lat = step["lateness"]
        step.setdefault("measured_seconds", s["window_seconds"] + 1)
        operator = 100 * step["cpu_seconds"].get("schedexec operator", 0) / step["measured_seconds"]
        lines.append(
            f"| {step['rate']:g} | {step['n']} | {step['realized_rate']:.1f} | {lat['p50']:.3f} | {lat['p99']:.3f} "
            f"| {lat['max']:.3f} | {step['late_over_1s']} | {step['machine_busy']:.0%} ({own_share(step):.0%}) "
            f"| {operator:.0f} "
            f"| {step['first_runs_not_waiting_at_t0']} / {step['failed']} |"
        )
    best, over = s["highest_rate_p99_under_1s"], s["lowest_rate_p99_over_1s"]
    lines += [
        "",
        f"Highest due rate with p99 < 1 s: **{best if best is None else f'{best:g} runs/s'}**; "
        + (f"p99 crosses 1 s between {best:g} and {over:g} runs/s." if best is not None and over is not None else "")
        + ("p99 never reached 1 s." if over is None else ""),
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots if p == "bench-lateness-steps.png"] + [""]
    return lines


def latency_section(lat: dict[str, Any], plots: list[str]) -> list[str]:
    if "n" not in lat:
        return []
    lines = [
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
    return lines + [""] + [f"![{p}]({p})" for p in plots if p != "bench-lateness-steps.png"] + [""]


def scale_section(s: dict[str, Any]) -> list[str]:
    if "rss_mb" not in s:
        return []
    return [
        "## Scale",
        "",
        f"{s['n']:,} executions waiting between polls (each run 1 scheduled the next in 2 hours): "
        f"{s['real_first_runs']:,} of them through real first runs by the operator (in "
        f"{s['real_first_runs_seconds']:.0f} s), the other {s['seeded']:,} seeded: their waiting status was "
        "written with the operator stopped, exactly as the operator writes it after such a run 1 (made by "
        "`schedexec.decisions`). The operator then loaded those like after a restart (settled in "
        f"{s['load_seconds']:.1f} s, making {s['writes_while_loading']} writes) before the real first runs "
        f"went through it. Measured over {s['seconds']} s while nothing was due ({s['waiting_at_end']:,} "
        "executions Waiting at the end):",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| operator RSS | {s['rss_mb']:.0f} MB | ≤ 200 MB |",
        f"| operator CPU | {100 * s['cpu_share']:.2f} % of a core | ≤ 2 % |",
        "",
    ]


def rest_section(r: dict[str, Any]) -> list[str]:
    if "skipped" in r:
        return ["## REST poll endpoint", "", f"Not measured: {r['skipped']}.", ""]
    if "runs" not in r:
        return []
    lines = [
        "## REST poll endpoint",
        "",
        f"wrk on loopback (plain HTTP), 2 threads, with {r['cached_executions']:,} executions in the watch-fed "
        "cache, bearer token (TokenReview and SubjectAccessReview answers cached). "
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
    return [*lines, ""]


def write(results: dict[str, Any], out: Path, report_path: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    node = None if results.get("quick") or not NODE_RESULTS.exists() else json.loads(NODE_RESULTS.read_text())
    report_path.write_text(report(results, plot(results, report_path.parent), node))


# --- main ------------------------------------------------------------------------------------------

FULL: dict[str, Any] = {
    "executions": 1000,
    "repeats": 3,
    "creation_seconds": 20.0,
    "rates": "2,4,8,16,32,64",
    "step_seconds": 30.0,
    "rate": 10.0,
    "seconds": 30,
    "polling": 20,
    "timeouts": 20,
    "scale": 10000,
    "scale_real": 2000,
    "idle_seconds": 60,
    "wrk_seconds": 10,
}
QUICK: dict[str, Any] = {
    "executions": 40,
    "repeats": 3,
    "creation_seconds": 4.0,
    "rates": "2,4",
    "step_seconds": 6.0,
    "rate": 5.0,
    "seconds": 6,
    "polling": 4,
    "timeouts": 4,
    "scale": 300,
    "scale_real": 60,
    "idle_seconds": 10,
    "wrk_seconds": 2,
}
SCENARIOS = ("throughput", "creation_rate", "lateness_steps", "latency", "scale", "rest")


def main() -> int:
    parser = argparse.ArgumentParser(description="schedexec benchmarks on the local control plane")
    parser.add_argument("--quick", action="store_true", help="small sizes, results into the run's temp directory")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/benchmarks.md from the results")
    parser.add_argument("--executions", type=int, help="throughput: executions (and raw Jobs) per repeat")
    parser.add_argument("--repeats", type=int, help="throughput: repeats (the report gives the median)")
    parser.add_argument("--creation-seconds", type=float, help="creation rate: how long to create raw Jobs")
    parser.add_argument("--rates", help="lateness steps: runs due per second, comma-separated, in order")
    parser.add_argument("--step-seconds", type=float, help="lateness steps: how long runs fall due at each rate")
    parser.add_argument("--rate", type=float, help="latency: executions created per second")
    parser.add_argument("--seconds", type=int, help="latency: how long to create them")
    parser.add_argument("--polling", type=int, help="latency: polling sequences of 5 runs")
    parser.add_argument("--timeouts", type=int, help="latency: timeout-detection executions")
    parser.add_argument("--scale", type=int, help="scale: executions waiting between polls")
    parser.add_argument("--scale-real", type=int, help="scale: how many of them through real first runs")
    parser.add_argument("--idle-seconds", type=int, help="scale: how long the idle operator is measured")
    parser.add_argument("--wrk-seconds", type=int, help="REST: seconds per wrk run")
    parser.add_argument("--parallelism", type=int, default=16, help="node agent: pods at once")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    options = parser.parse_args()
    if options.render:
        write(json.loads((RESULTS / "latest.json").read_text()), RESULTS / "latest.json", REPORT)
        log(f"wrote {REPORT} from {RESULTS / 'latest.json'}")
        return 0
    sizes = {
        key: getattr(options, key) if getattr(options, key) is not None else value
        for key, value in (QUICK if options.quick else FULL).items()
    }
    state = Path(tempfile.mkdtemp(prefix="schedexec-bench-"))
    out, report_path = (
        (state / "results.json", state / "benchmarks.md") if options.quick else (RESULTS / "latest.json", REPORT)
    )
    results: dict[str, Any] = {
        "machine": provenance.machine(),
        "kubernetes": binaries.KUBERNETES_VERSION,
        "etcd": binaries.ETCD_VERSION,
        "code": provenance.code_version(),
        "command": "python bench/run.py " + " ".join(sys.argv[1:]),
        "quick": options.quick,
        "sizes": sizes,
        "runtimes": {},
    }
    code = provenance.snapshot(state / "code")
    bench = Bench(state, options.parallelism, code)
    try:
        bench.start_operator()
        settings = bench.operator_settings()
        results["settings"] = {
            "set_by_bench": {
                **OPERATOR_SETTINGS,
                "SCHEDEXEC_METRICS_PORT": "a free port",
                "SCHEDEXEC_LIVENESS_ENDPOINT": "a free port on 127.0.0.1",
            },
            "effective": settings,
            "control_plane": control_plane_flags(bench),
        }
        scenarios: dict[str, Callable[[], dict[str, Any]]] = {
            "throughput": lambda: throughput(bench, sizes["executions"], sizes["repeats"], settings),
            "creation_rate": lambda: creation_rate(bench, sizes["creation_seconds"], settings),
            "lateness_steps": lambda: lateness_steps(
                bench,
                [float(r) for r in sizes["rates"].split(",")],
                sizes["step_seconds"],
                results.get("throughput", {}).get("schedexec_per_second_median", 5.0),
            ),
            "latency": lambda: latency(bench, sizes["rate"], sizes["seconds"], sizes["polling"], sizes["timeouts"]),
            "scale": lambda: scale(bench, sizes["scale"], sizes["scale_real"], sizes["idle_seconds"], settings),
            "rest": lambda: rest_poll(bench, sizes["wrk_seconds"], sizes["scale"]),
        }
        for name, scenario in scenarios.items():
            if name not in options.only:
                continue
            began = time.monotonic()
            try:
                results[name] = scenario()
            except Exception as exc:  # one scenario's failure is reported, the others still run
                log(f"{name} failed: {exc!r}")
                results[name] = {"error": repr(exc)[:500]}
                if bench.operator is None:
                    bench.start_operator()
                bench.clear()
            results["runtimes"][name] = time.monotonic() - began
            write(results, out, report_path)  # after each scenario: an interrupted run keeps what it measured
    finally:
        bench.down()
    log(f"wrote {report_path} and {out}; cluster state in {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
