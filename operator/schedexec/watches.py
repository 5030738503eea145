"""schedexec's one list/watch: the operator's streams of executions, their Jobs and the Jobs' pods, and the
REST API's stream of executions.

In the operator every object of these kinds only feeds the store (store.py); every decision is the
controller's. The REST API's execution cache (api/cache.py) is fed by the same `stream`, through
`api.kubeclient.KubeClient.follow_executions`: one implementation of relist, bookmarks, 410 Gone, backoff
and the synced barrier, not two.

A stream is what an informer's reflector is: list in pages, watch from the list's resourceVersion with
bookmarks, list again after 410 Gone, reconnect with backoff after any failure. It is written here, on the API
server's public HTTP protocol, rather than taken from Kopf's internal watch stream, because what comes in
is untrusted: one execution that the API server accepts (args nested 1,000 deep, say) made Kopf's
decoder raise RecursionError, which ended the stream and crash-looped the operator for every tenant
(issue 24). Here:

- bodies are decoded with `bounds.loads` (any depth the API server allows) one at a time, and an event
  that cannot be decoded or handled is logged (which object, never its content) and skipped;
- no failure of the API server ends a stream: 5xx, 429, network errors and timeouts are retried with
  capped exponential backoff, forever (a minute of 5xx during a list used to stop the operator). Only a
  403 (the RBAC lacks list or watch) ends it, so a misconfigured install fails visibly;
- the end of a list is told only for a list that completed: the keys of a list aborted midway are never
  reported, so nothing is taken as deleted because a page was missing.

The end of the first lists is told to the controller, as an informer's "synced": its workers start only
once every execution, Job and pod is in the store (a restarted operator must count the runs its
predecessor started before it hands out a slot). Every completed list, the first and each relist after a
watch gap, also reports the keys it listed: an object deleted while the watch was not looking gets no
DELETED event, so the controller drops what its cache holds and the list did not show
(Controller.relisted), as an informer's Replace does; the REST API's cache does the same
(ExecutionCache.relisted). A stream tells an optional `failed` each time it backs off, so a cache whose
stream keeps failing can stop calling itself synced.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from schedexec import kube, logsafe, manifests, models
from schedexec.objects import key_of
from schedexec_runner import bounds

log = logging.getLogger("schedexec")

Handle = Callable[[str | None, Mapping[str, Any]], None]
"""controller.execution_event, job_event or pod_event: (event type, None for a listed object; the object)."""
Listed = Callable[[frozenset[str]], None]
"""Called when a list is over (the first one, and again after each relist), with the keys (namespace/name)
of the objects it listed; never for a list that failed midway."""
Failed = Callable[[int], None]
"""Called each time a stream backs off (a failure, or a watch closed at once with nothing), with how many
times in a row it has since its last completed list or watch: the REST API's cache stops calling itself
synced after a few (api/cache.py)."""
Relisted = Callable[[str, str | None, frozenset[str]], None]
"""controller.relisted: (the resource's plural, the namespace or None for cluster-wide, the keys listed)."""

LIST_PAGE = 500
"""Jobs and pods per page of a list: at most one page is read and decoded at a time."""
EXECUTION_PAGE = 50
"""Executions per page: an execution may be up to 1.5 MiB (etcd's limit; args of any size are accepted by
the API server), so a page is read whole before the store screens each item (screening.py): 50 of them
are at most 75 MiB, 500 could be 750 MiB, past the chart's memory limit."""
WATCH_SECONDS = 300
"""How long the API server keeps one watch request open before it is renewed (timeoutSeconds)."""
QUICK_WATCH_SECONDS = 1.0
"""A watch that ends this soon having brought nothing (a proxy closing it, say) is retried after a backoff."""
BACKOFF_SECONDS = (0.5, 30.0)
"""First and longest wait before a stream tries again after a failure (doubling, with jitter)."""
MANAGED = f"app.kubernetes.io/managed-by={manifests.MANAGED_BY}"
"""Only the Jobs and pods schedexec made are watched, filtered by the API server."""


@dataclass(frozen=True)
class Resource:
    """A kind the operator streams: its API version, plural and server-side label selector."""

    version: str
    plural: str
    selector: str | None = None
    page: int = LIST_PAGE
    """Objects per page of a list: at most one page is read and decoded at a time."""

    def url(self, namespace: str | None) -> str:
        if namespace is not None:
            return kube.path(self.version, namespace, self.plural)
        return f"{kube.root(self.version)}/{self.plural}"


EXECUTIONS = Resource(models.API_VERSION, models.PLURAL, page=EXECUTION_PAGE)
JOBS = Resource(kube.JOBS, "jobs", MANAGED)
PODS = Resource("v1", "pods", MANAGED)


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Fatal(Exception):
    """The API server refuses this stream for good (403: the operator may not list or watch the kind)."""


class Backoff:
    """Capped exponential backoff with jitter; `reset` after a success."""

    def __init__(self, first: float = BACKOFF_SECONDS[0], longest: float = BACKOFF_SECONDS[1]) -> None:
        self.first, self.longest, self.failures = first, longest, 0

    def next(self) -> float:
        delay = min(self.longest, self.first * 2**self.failures)
        self.failures += 1
        return float(delay * random.uniform(0.8, 1.0))

    def reset(self) -> None:
        self.failures = 0


def deliver(event_type: str | None, body: Any, handle: Handle, resource: Resource) -> None:
    """Hand one object to the controller; a failure to handle it is logged and the stream goes on (one object
    the controller cannot take must not stop the stream for every other)."""
    try:
        handle(event_type, body)
    except Exception as exc:
        what = about(event_type, body)
        log.error("a %s watch event could not be handled: %s: %s", resource.plural, what, logsafe.described(exc))


def about(event_type: str | None, body: Any) -> str:
    """Which object an event is about, for a log line (never its content: it may hold credentials)."""
    meta = body.get("metadata") if isinstance(body, Mapping) else None
    if not isinstance(meta, Mapping):
        return f"{event_type} (an object without metadata)"
    return f"{event_type} {meta.get('namespace')}/{meta.get('name')}"


async def list_once(
    api: kube.Api, resource: Resource, namespace: str | None, handle: Handle
) -> tuple[str, frozenset[str]]:
    """List every object in pages, handing each to `handle` (event type None); returns the list's
    resourceVersion and the keys listed. Raises if any page fails: then nothing is reported as listed."""
    keys: set[str] = set()
    params = {"limit": str(resource.page)}
    if resource.selector:
        params["labelSelector"] = resource.selector
    while True:
        answer = await api.call("get", resource.url(namespace), params=params)
        page = answer.body if isinstance(answer.body, Mapping) else {}
        for item in page.get("items") or []:
            if isinstance(item, Mapping) and isinstance(item.get("metadata"), Mapping):
                keys.add(key_of(item))
                deliver(None, item, handle, resource)
        meta = page.get("metadata") or {}
        if not meta.get("continue"):
            return str(meta.get("resourceVersion") or ""), frozenset(keys)
        params = {**params, "continue": str(meta["continue"])}


async def watch_once(api: kube.Api, resource: Resource, namespace: str | None, version: str, handle: Handle) -> str:
    """One watch request from `version` until the API server ends it; returns the last resourceVersion seen
    (bookmarks included). Raises Expired on 410 Gone."""
    params = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": version}
    params["timeoutSeconds"] = str(WATCH_SECONDS)
    if resource.selector:
        params["labelSelector"] = resource.selector
    timeout = aiohttp.ClientTimeout(total=WATCH_SECONDS + 60, sock_connect=10.0, sock_read=WATCH_SECONDS + 30)
    response = await api.open("get", resource.url(namespace), params=params, timeout=timeout)
    async with response:
        async for line in lines(response.content):
            version = take(line, version, handle, resource)
    return version


def take(line: bytes, version: str, handle: Handle, resource: Resource) -> str:
    """One line of a watch: decoded, handed on, and the resourceVersion to resume from returned."""
    try:
        event = bounds.loads(line)
    except ValueError as exc:  # not JSON, or deeper than the API server allows: nothing to act on
        log.error("a %s watch event could not be decoded (%s); skipped", resource.plural, type(exc).__name__)
        return version
    if not isinstance(event, Mapping) or not isinstance(event.get("object"), Mapping):
        return version
    kind, body = event.get("type"), event["object"]
    if kind == "ERROR":
        if body.get("code") == 410:
            raise Expired(str(body.get("message", "")))
        raise aiohttp.ClientPayloadError(f"the watch ended with an error: {body.get('code')} {body.get('reason')}")
    meta = body.get("metadata")
    if isinstance(meta, Mapping) and meta.get("resourceVersion"):
        version = str(meta["resourceVersion"])
    if kind in ("ADDED", "MODIFIED", "DELETED") and isinstance(meta, Mapping):
        deliver(str(kind), body, handle, resource)
    return version


async def lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The lines of a watch response, whatever their length (aiohttp's own line reader refuses lines over
    128 KiB, and an execution may be 1.5 MiB)."""
    buffer = bytearray()
    async for chunk in content.iter_any():
        start = len(buffer)
        buffer += chunk
        end = buffer.find(b"\n", start)
        while end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield line
            end = buffer.find(b"\n")
    if buffer.strip():
        yield bytes(buffer)


async def stream(
    api: kube.Api,
    resource: Resource,
    namespace: str | None,
    handle: Handle,
    listed: Listed,
    backoff: Backoff | None = None,
    failed: Failed = lambda _: None,
) -> None:
    """Every event of one kind in one namespace (None: cluster-wide), forever. Ends only by raising Fatal
    (a 403: the operator's RBAC lacks list or watch), which stops the operator (cli.run_operator) and the
    REST API's cache (api/cache.py)."""
    backoff = backoff or Backoff()
    where = namespace or "all namespaces"

    def backing_off() -> float:
        """The wait before the next try; `failed` is told how many in a row."""
        delay = backoff.next()
        failed(backoff.failures)
        return delay

    while True:
        try:
            version, keys = await list_once(api, resource, namespace, handle)
            backoff.reset()
            listed(keys)
            while True:
                started, before = time.monotonic(), version
                version = await watch_once(api, resource, namespace, version, handle)
                if version == before and time.monotonic() - started < QUICK_WATCH_SECONDS:
                    await asyncio.sleep(backing_off())  # closed at once with nothing: never a tight loop
                else:
                    backoff.reset()
        except Expired:
            log.debug("the %s watch in %s expired; listing again", resource.plural, where)
            continue
        except kube.APIError as exc:
            if exc.status == 403:
                raise Fatal(f"the operator may not list or watch {resource.plural} in {where}: {exc}") from exc
            problem = f"HTTP {exc.status}"
        except Exception as exc:  # the network, a timeout, a body that is not JSON, Kopf's login: try again
            problem = type(exc).__name__
        delay = backing_off()
        log.warning("the %s stream in %s failed (%s); trying again in %.1fs", resource.plural, where, problem, delay)
        await asyncio.sleep(delay)


def streams(
    api: kube.Api,
    namespaces: Collection[str],
    executions: Handle,
    jobs: Handle,
    pods: Handle,
    relisted: Relisted,
    listed: Callable[[], None],
) -> list[Coroutine[Any, Any, None]]:
    """The execution, Job and pod streams of every watched namespace (none given: one cluster-wide stream
    each). `relisted` is told the keys of every completed list of each; `listed` is called once every
    stream has finished its first list, and never again."""
    where: list[str | None] = list(namespaces) or [None]
    kinds = [(EXECUTIONS, executions), (JOBS, jobs), (PODS, pods)]
    unlisted = {(resource.plural, ns) for resource, _ in kinds for ns in where}

    def listed_one(resource: Resource, namespace: str | None) -> Listed:
        def done(keys: frozenset[str]) -> None:
            try:
                relisted(resource.plural, namespace, keys)
            except Exception as exc:  # the workers start even if handling what vanished failed
                log.error("handling what vanished from the %s list failed: %s", resource.plural, logsafe.described(exc))
            finally:
                if unlisted:
                    unlisted.discard((resource.plural, namespace))
                    if not unlisted:
                        listed()

        return done

    return [stream(api, resource, ns, handle, listed_one(resource, ns)) for resource, handle in kinds for ns in where]
