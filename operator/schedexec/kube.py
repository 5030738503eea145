"""schedexec's one door to the Kubernetes API: every request of the operator and of the REST API.

`Api` is one aiohttp session on the event loop (one connection pool, no
thread per call), authenticated with the credentials of Kopf's public
login function `kopf.login_via_pykube` (in-cluster service account, else
$KUBECONFIG or ~/.kube/config): the same credentials Kopf's own login
handler finds. A 401 logs in again once and repeats the request (a
rotated service-account token is read afresh); an expired login is
renewed before the request. Only public APIs: the operator used to send
its requests through the internal client and vault of Kopf (private modules),
which pinned Kopf to one minor version (issue 26).

`Cluster` is everything the operator *does*: create and delete a run's
Job, list its pods (when the watch cache may lag), read a stuck pod's
FailedMount events or a run's log, keep a large result, write an
execution's status, post an Event, delete an expired execution. The REST
API asks through its own narrow protocol (`schedexec.api.kubeclient`) on
the same `Api`; list and watch go through watches.py for both.

Errors come out as what the controller cares about: done, `Conflict` or
`Gone` (reconcile again on a fresh read), a permanent refusal of a Job
(`PERMANENT`: the execution fails), `NotLeading` (a fenced write was not
sent: requeue), or an exception in `TRANSIENT` (retry with backoff).

Fencing (issue 25): with several replicas, `Cluster` is given the leader
elector's fence, and every write it makes checks it at the last moment
before the request's bytes go out (aiohttp's public `on_request_headers_sent`
trace signal, after the login is fresh and a connection is at hand: the
awaits between a reconcile's decision and the send, during which the lease
may run out, are all behind it). A refused write raises `NotLeading` and
nothing reaches the API server. A fenced write is also bounded in time
(FENCED_TIMEOUT_SECONDS, sent to the API server as its `timeout` parameter
and kept by the client), so a write sent while the lease was valid is done
or given up before another replica may take over (leader.py has the bound).
The Lease requests themselves are not fenced.

Every answer's `Date` header feeds `Api.clock`, the API server's clock as
estimated here (clock.py): the wall clock the operator writes and judges
times by, the same on every replica.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from schedexec import manifests, metrics, models
from schedexec.clock import ServerClock
from schedexec.objects import owner_uids
from schedexec_runner import bounds

JOBS = "batch/v1"
ERROR_BODY_BYTES = 64 * 1024
"""How much of an error answer is read: the API server's Status is small; anything larger is not one."""


class APIError(Exception):
    """An error status from the API server: its `status`, the Status `body` it answered (or its text) and
    the Status's `message`."""

    def __init__(self, body: Any, *, status: int, headers: Mapping[str, str] | None = None) -> None:
        message = body.get("message") if isinstance(body, Mapping) else body
        self.status, self.body, self.headers = status, body, dict(headers or {})
        self.message = message if isinstance(message, str) else ""
        super().__init__(f"HTTP {status}: {self.message}"[:1024])


TRANSIENT = (aiohttp.ClientError, TimeoutError, APIError, kopf.LoginError)
"""Errors worth retrying: the network, the login, or an API answer other than the ones handled here."""


def transient(exc: BaseException) -> bool:
    """Whether a failure may heal by itself, so retrying the same request is right: the network, a timeout,
    or the API server overloaded, restarting, throttling or (during an upgrade or a token renewal) refusing
    for a moment (429, 5xx, 401, 403). Anything else (a 4xx refusal of what was sent, an exception of the
    operator's own code) fails the same way again."""
    if isinstance(exc, APIError):
        return exc.status in (401, 403, 429) or exc.status >= 500
    # kopf.LoginError: the credentials ran out for a moment (a token being renewed); a JSONDecodeError: an
    # answer cut short or garbled on the way (a proxy), never one the API server meant
    transport = (aiohttp.ClientError, TimeoutError, ConnectionError, kopf.LoginError)
    return isinstance(exc, transport) or type(exc) is json.JSONDecodeError


REQUEST_TIMEOUT_SECONDS = 60.0
"""Longest wait for one answer (a run's log of a large result included)."""
FENCED_TIMEOUT_SECONDS = 4
"""Longest a fenced write may take, client and API server alike (leader.py: within LEASE_SECONDS less
RENEW_DEADLINE_SECONDS, so a write sent under a valid lease is done before another replica may act)."""

log = logging.getLogger("schedexec")


class NotLeading(Exception):
    """This replica may not act now: it lost, or could not renew in time, the leader lease. Raised by the fence
    right before a write is sent, so the write never reached the API server; the controller requeues."""


Fence = Callable[[], None]
"""Checked right before a fenced write is sent; raises NotLeading if this replica may not act now."""


class Conflict(Exception):
    """The object changed since it was read (HTTP 409 on an update)."""


class Gone(Exception):
    """The object no longer exists (HTTP 404 on an update)."""


class JobNameTaken(Exception):
    """A Job with a run's name exists but belongs to something else."""


class JobRejected(Exception):
    """The API server refused a run's Job for good (a 4xx other than 404, 409 and 429: invalid, forbidden,
    over a ResourceQuota): retrying the same Job cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


PERMANENT = (JobNameTaken, JobRejected)
"""Errors of a Job creation that end the execution instead of being retried."""


def path(version: str, namespace: str, resource: str) -> str:
    """The URL path of `resource` (e.g. "jobs/NAME/status") of API `version` in `namespace`."""
    return f"{root(version)}/namespaces/{namespace}/{resource}"


def root(version: str) -> str:
    """The URL path of API `version` ("v1" is the core group)."""
    return "/api/v1" if version == "v1" else f"/apis/{version}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    """The parsed JSON (text for `text=True`), or the API server's Status (or its text) for a tolerated error."""


Login = Callable[[], kopf.ConnectionInfo]
"""Where the credentials come from (called again after a 401 or once they expire)."""


def login_from_environment() -> kopf.ConnectionInfo:
    """In-cluster service account, else $KUBECONFIG or ~/.kube/config, through Kopf's public login function
    (the one Kopf's own login handler uses: handlers.py). Raises kopf.LoginError if there is neither."""
    info = kopf.login_via_pykube(logger=log, settings=kopf.OperatorSettings())
    if info is None:
        raise kopf.LoginError("cannot log in: pykube-ng is not installed")
    return info


@dataclass
class _Session:
    """One login's connection: its aiohttp session, headers and server."""

    info: kopf.ConnectionInfo
    http: aiohttp.ClientSession
    headers: dict[str, str]

    def expired(self, now: datetime) -> bool:
        expiry = self.info.expiration
        if expiry is None:
            return False
        expiry = expiry if expiry.tzinfo is not None else expiry.replace(tzinfo=UTC)
        return expiry <= now


async def _check_fence(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    """aiohttp's last signal before a request's bytes are written (the headers are buffered with the body):
    a fenced request checks its fence here, and raising ends the request unsent."""
    fence = context.trace_request_ctx
    if fence is not None:
        fence()


def _fencing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_check_fence)
    return trace


class Api:
    """HTTP calls to the API server on the event loop; `clock` is the API server's clock (clock.py)."""

    def __init__(
        self,
        login: Login = login_from_environment,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        clock: ServerClock | None = None,
    ) -> None:
        self.login = login
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10.0)
        self.fenced_timeout = aiohttp.ClientTimeout(total=min(timeout, FENCED_TIMEOUT_SECONDS))
        self.clock = clock or ServerClock()
        self._session: _Session | None = None
        self._lock: asyncio.Lock | None = None

    @classmethod
    def from_environment(cls) -> Api:
        """An Api with the environment's credentials (`login_from_environment`); safe to make before the event
        loop runs: the session is made on the first request."""
        return cls(login_from_environment)

    async def call(
        self,
        method: str,
        url: str,
        payload: object | None = None,
        params: Mapping[str, str] | None = None,
        tolerate: Collection[int] = (),
        text: bool = False,
        fence: Fence | None = None,
    ) -> Answer:
        """One request, no retries (the controller backs off); an error status in `tolerate` is answered,
        any other raises (APIError, or the network's error). The answer is decoded with `bounds.loads` (an
        object nested as deep as the API server allows is read, never a RecursionError); `text=True` decodes
        bytes that are not UTF-8 as U+FFFD (a pod's log may hold anything). With a `fence`, the request is
        checked right before it is sent (NotLeading: not sent) and bounded by FENCED_TIMEOUT_SECONDS."""
        if fence is not None:
            params = {**(params or {}), "timeout": f"{FENCED_TIMEOUT_SECONDS}s"}
        timeout = self.timeout if fence is None else self.fenced_timeout
        try:
            response = await self.open(method, url, payload, params, timeout, fence)
        except APIError as exc:
            if exc.status in tolerate:
                return Answer(exc.status, exc.body)
            raise
        async with response:
            raw = await response.read()
        return Answer(response.status, raw.decode("utf-8", errors="replace") if text else bounds.loads(raw))

    async def open(
        self,
        method: str,
        url: str,
        payload: object | None = None,
        params: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        fence: Fence | None = None,
    ) -> aiohttp.ClientResponse:
        """The response of one request, its body unread (a watch streams it); raises APIError on an error
        status. A 401 logs in again and repeats the request once. `fence`: checked right before the request is
        sent (each time); raises NotLeading, unsent. Every answer's `Date` tells `clock` the server's time."""
        for attempt in (1, 2):
            session = await self._connected(renew=attempt == 2)
            sent = self.clock.monotonic()
            try:
                response = await session.http.request(
                    method.upper(),
                    session.info.server.rstrip("/") + url,
                    params=params,
                    json=payload,
                    headers=session.headers,
                    timeout=timeout or self.timeout,
                    trace_request_ctx=fence,
                )
            except (aiohttp.ClientError, TimeoutError):
                metrics.observe_request(method, self.clock.monotonic() - sent, None)
                raise
            answered = self.clock.monotonic()
            metrics.observe_request(method, answered - sent, response.status)
            self.clock.observe(response.headers.get("Date"), sent, answered)
            if response.status < 400:
                return response
            async with response:
                raw = await response.content.read(ERROR_BODY_BYTES)
            if response.status == 401 and attempt == 1:
                continue
            raise APIError(_status_of(raw), status=response.status, headers=dict(response.headers))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.http.close()
            self._session = None

    async def _connected(self, renew: bool = False) -> _Session:
        """The current login's session; a new one after a 401 (`renew`) or once the login expired."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            session = self._session
            if session is not None and not renew and not session.expired(self.clock.now()):
                return session
            info = await asyncio.to_thread(self.login)
            ssl = info.as_ssl_context() if info.server.startswith("https:") else False
            connector = aiohttp.TCPConnector(ssl=ssl, limit=0)
            http = aiohttp.ClientSession(connector=connector, trust_env=info.trust_env, trace_configs=[_fencing()])
            self._session = _Session(info, http, info.as_http_headers())
            if session is not None:
                await session.http.close()
            return self._session


def _status_of(raw: bytes) -> Any:
    """The API server's Status in an error answer, or its text if it is none."""
    try:
        return bounds.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


class Cluster:
    """What the operator does to the cluster; every write checks `fence` right before it is sent."""

    def __init__(self, api: Api, fence: Fence | None = None) -> None:
        self.api, self.fence = api, fence

    def now(self) -> datetime:
        """The API server's clock (clock.py): what the operator writes and judges times by."""
        return self.api.clock.now()

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        answer = await self.api.call("get", path(JOBS, namespace, f"jobs/{name}"), tolerate=(404,))
        return None if answer.status == 404 else answer.body

    async def create_job(self, manifest: dict[str, Any]) -> bool:
        """Create a run's Job; one of that name that is this very Job (manifests.made_for: the operator made
        it for this run, before a crash or a leader change) is the same run (False: it was there already).
        Any other Job of that name (another execution's, or one a user made and gave this execution as its
        owner) is never adopted: JobNameTaken."""
        meta = manifest["metadata"]
        try:
            url = path(JOBS, meta["namespace"], "jobs")
            answer = await self.api.call("post", url, manifest, tolerate=(409,), fence=self.fence)
        except APIError as exc:
            if exc.status in (401, 404, 429) or exc.status >= 500:  # not logged in, no namespace yet, throttled
                raise
            raise JobRejected(exc.status, exc.message or str(exc)) from exc
        if answer.status != 409:
            return True
        existing = await self.get_job(meta["namespace"], meta["name"])
        if existing is None:
            return False
        where = f"Job {meta['namespace']}/{meta['name']}"
        if meta["ownerReferences"][0]["uid"] not in owner_uids(existing):
            raise JobNameTaken(f"{where} exists and is not owned by this execution")
        difference = manifests.made_for(existing, manifest)
        if difference is not None:
            raise JobNameTaken(
                f"{where} exists and was not made by schedexec for this run ({difference}): it is not adopted"
            )
        return False

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a run's Job (and, through the garbage collector, its pod); only Job `uid` if given."""
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        url = path(JOBS, namespace, f"jobs/{name}")
        await self.api.call("delete", url, options, tolerate=(404, 409), fence=self.fence)

    async def run_pods(self, namespace: str, job_uid: str) -> list[dict[str, Any]]:
        """The pods of the Job `job_uid` (by the controller's uid label: not those of another Job of its name)."""
        return await self._list(namespace, "pods", {"labelSelector": f"batch.kubernetes.io/controller-uid={job_uid}"})

    async def pod_log(
        self, namespace: str, pod: str, container: str, limit_bytes: int, tail_lines: int | None = None
    ) -> str | None:
        """The log of `container` in `pod` (None if the pod is gone): its last `tail_lines` lines if given, at
        most `limit_bytes` of them; bytes that are not UTF-8 read as U+FFFD."""
        params = {"container": container, "limitBytes": str(limit_bytes)}
        if tail_lines is not None:
            params["tailLines"] = str(tail_lines)
        url = path("v1", namespace, f"pods/{pod}/log")
        answer = await self.api.call("get", url, params=params, tolerate=(404,), text=True)
        return None if answer.status == 404 else str(answer.body)

    async def pod_events(self, namespace: str, pod_uid: str, reason: str) -> list[dict[str, Any]]:
        """The events with `reason` about the pod `pod_uid` (e.g. the kubelet's FailedMount)."""
        return await self._list(namespace, "events", {"fieldSelector": f"involvedObject.uid={pod_uid},reason={reason}"})

    async def _list(self, namespace: str, resource: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The items of one core/v1 list call in `namespace`."""
        answer = await self.api.call("get", path("v1", namespace, resource), params=params)
        return answer.body.get("items") or []

    async def write_status(self, execution: models.ScheduledExecution, status: dict[str, Any]) -> dict[str, Any]:
        """Replace the whole status, guarded by resourceVersion; returns the new object.

        A PUT, not a merge patch: a merge patch would keep keys of nested objects
        (nextArgs, result, partialResult) that the new status no longer has.
        The status subresource takes nothing but the status from the body (the stored spec is kept), so
        no spec is sent: only the execution's metadata is read.
        """
        meta = execution.metadata
        body = {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": meta.name, "namespace": meta.namespace, "resourceVersion": meta.resource_version},
            "status": status,
        }
        url = path(models.API_VERSION, meta.namespace, f"{models.PLURAL}/{meta.name}/status")
        answer = await self.api.call("put", url, body, tolerate=(404, 409), fence=self.fence)
        if answer.status == 409:
            raise Conflict(execution.key)
        if answer.status == 404:
            raise Gone(execution.key)
        return answer.body  # type: ignore[no-any-return]

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        url = path(models.API_VERSION, namespace, f"{models.PLURAL}/{name}")
        answer = await self.api.call("get", url, tolerate=(404,))
        return None if answer.status == 404 else answer.body

    async def post_event(self, execution: models.ScheduledExecution, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the execution, so `kubectl describe sx` tells its story."""
        now = self.now().isoformat(timespec="seconds").replace("+00:00", "Z")
        meta = execution.metadata
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.name}.", "namespace": meta.namespace},
            "involvedObject": {
                "apiVersion": models.API_VERSION,
                "kind": models.KIND,
                "name": meta.name,
                "namespace": meta.namespace,
                "uid": meta.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "schedexec-operator"},
            "reportingComponent": "schedexec.io/operator",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.api.call("post", path("v1", meta.namespace, "events"), event, fence=self.fence)
        except TRANSIENT as exc:  # events are best effort: never fail a reconcile for one
            log.warning("cannot post event %s on %s: %s", reason, execution.key, exc)

    async def delete_execution(self, execution: models.ScheduledExecution) -> None:
        meta = execution.metadata
        options = {"preconditions": {"uid": meta.uid}, "propagationPolicy": "Background"}
        url = path(models.API_VERSION, meta.namespace, f"{models.PLURAL}/{meta.name}")
        await self.api.call("delete", url, options, tolerate=(404, 409), fence=self.fence)
