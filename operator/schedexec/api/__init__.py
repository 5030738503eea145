"""The REST API: elastic.io's asynchronous schedule / poll / result API on ScheduledExecutions.

It stores nothing of its own. A POST creates a ScheduledExecution and answers
`202 Accepted` with `Location: /v2/exec/poll/{id}`; a poll answers `200`
while the execution runs and `303 See Other` to `/v2/exec/result/{id}` once
it finished; the result answers `200` with the result, `409` while not
finished, `400` with reason, message and partial result when it failed,
timed out or was cancelled. The execution id is the resource's UID: opaque,
stable and URL-safe.

Every request but the probes is authenticated with a bearer token for the
API's audience (TokenReview) and authorized with a SubjectAccessReview on
`scheduledexecutions` in the target namespace (`create` to schedule, before
the body is read; `get` to poll and read; `create` secrets to send elastic.io
`fields` the API seals in a Secret, `sealing`). An Idempotency-Key binds
names only the API can compute (an HMAC under its own key), so no other
user can bind a caller's key first. An id in a namespace the caller
may not read answers 404, exactly like an unknown id, so ids reveal nothing.
Polls are served from a watch-fed cache. The API serves TLS, plain HTTP
only when told it is a development setup.

One module a concern: `app` wires the routers (`elastic`, `generic`,
`polling`), `server` sets up the listener (trusted proxies, deadlines,
connection limit); `bodies` and `params` describe requests,
`jsonbody` reads a body's JSON within the bounds of `bounds`, `specs`
turns them into `models.ScheduledExecutionSpec` (pure), `submit` creates the
execution (`idempotency` binds its Idempotency-Key, `sealing` keeps
credentials in `fields` out of it), `documents` and `errors` shape the answers, `guard` checks
access before any route runs, `access` reviews callers within the budgets of
`limits`, `results` reads results kept in ConfigMaps, `cache` and
`kubeclient` are its only view of Kubernetes. That view is the operator's
own door, not a second client: `kubeclient` asks through `kube.Api` and
`cache` is fed by `watches.stream`, the operator's list/watch, all on
uvicorn's event loop (no thread per call).
"""
