"""The REST API's Kubernetes client, in memory: the unit tier's stand-in for the API server.

It implements `schedexec.api.kubeclient.Client` and nothing more, which is
also what the real client may do. Tokens and grants are set by the test;
created executions are stored by namespace/name with a UID and a
resourceVersion as the API server would give them; `set_status` plays the
operator and hands the new object to whoever follows the executions (the
ExecutionCache, which the app's lifespan starts). The real list/watch
behind `follow_executions` is watches.stream, tested in test_watches.py and
test_api_cache.py.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
from typing import Any

from schedexec import watches
from schedexec.api.kubeclient import Refused
from schedexec_runner import contract, main


class FakeKube:
    def __init__(self) -> None:
        self.users: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {}
        """token → the user a TokenReview answers, and the audiences the token was minted for."""
        self.grants: set[tuple[str, str, str, str, str]] = set()
        """(username, verb, resource, namespace or "*", name or "") a SubjectAccessReview allows."""
        self.executions: dict[tuple[str, str], dict[str, Any]] = {}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        """The Secrets the API created (or a test planted), by namespace/name."""
        self.secret_failure: Exception | None = None
        """What creating a Secret raises next (None: it is created)."""
        self.created: list[dict[str, Any]] = []
        """Every body the API asked to create, as sent."""
        self.token_reviews: list[str] = []
        self.reviewed_audiences: list[list[str]] = []
        self.access_reviews: list[dict[str, str]] = []
        self.watchers: list[watches.Handle] = []
        """Those following the executions now."""
        self.lists = True
        """Whether the list of executions is answered (False: it never is, as by an API server away)."""
        self.names_taken = 0
        """How many of the next creates with a generateName draw a name already taken (409, as None)."""
        self.refusal: str | None = None
        """The API server's message if it refuses (400, 422) to store what is created next."""
        self._versions = itertools.count(1)

    # --- set-up -------------------------------------------------------------------------------

    def user(
        self,
        token: str,
        username: str,
        *,
        groups: tuple[str, ...] = (),
        audiences: tuple[str, ...] = ("schedexec",),
        credential_id: str | None = None,
    ) -> None:
        """A token of `username`; `credential_id` goes into `extra` as the API server puts a ServiceAccount
        token's id there (a different one for every token of the same account)."""
        user: dict[str, Any] = {"username": username, "uid": f"uid-{username}", "groups": list(groups)}
        if credential_id is not None:
            user["extra"] = {"authentication.kubernetes.io/credential-id": [credential_id]}
        self.users[token] = (user, audiences)

    def grant(
        self, username: str, verb: str, namespace: str, resource: str = "scheduledexecutions", name: str = ""
    ) -> None:
        self.grants.add((username, verb, resource, namespace, name))

    def set_status(self, uid: str, **status: Any) -> dict[str, Any]:
        """The operator's part: write the status of execution `uid` and tell the watchers."""
        body = next(b for b in self.executions.values() if b["metadata"]["uid"] == uid)
        body["status"] = status
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        for watcher in self.watchers:
            watcher("MODIFIED", copy.deepcopy(body))
        return body

    # --- the Client protocol ------------------------------------------------------------------

    def delivered_args(self, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The args a run of an execution with `spec` gets: its own, or the ones sealed in its config Secret."""
        if contract.CONFIG_DIGEST not in spec["args"]:
            return dict(spec["args"])
        secret = self.secrets[namespace, spec["credentialsSecretRef"]["name"]]
        return main.unseal(spec["args"], base64.b64decode(secret["data"][contract.CONFIG_KEY]).decode())

    async def create_execution(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        self.created.append(copy.deepcopy(body))
        meta = copy.deepcopy(body["metadata"])
        if self.refusal is not None:
            raise Refused(self.refusal)
        if "generateName" in meta and self.names_taken > 0:
            self.names_taken -= 1
            return None
        version = next(self._versions)
        name = meta.pop("name", None) or f"{meta.pop('generateName')}{version:05d}"
        if (namespace, name) in self.executions:
            return None
        meta.update(name=name, namespace=namespace, uid=f"0000-{version:04d}", resourceVersion=str(version))
        stored = {**copy.deepcopy(body), "metadata": meta}
        self.executions[namespace, name] = stored
        return copy.deepcopy(stored)

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        stored = self.executions.get((namespace, name))
        return None if stored is None else copy.deepcopy(stored)

    async def follow_executions(self, handle: watches.Handle, listed: watches.Listed, failed: watches.Failed) -> None:
        """Lists once, then hands on every status `set_status` writes until cancelled."""
        if not self.lists:
            await asyncio.Event().wait()
        for stored in list(self.executions.values()):
            handle(None, copy.deepcopy(stored))
        listed(frozenset(f"{namespace}/{name}" for namespace, name in self.executions))
        self.watchers.append(handle)
        try:
            await asyncio.Event().wait()
        finally:
            self.watchers.remove(handle)

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        stored = self.config_maps.get((namespace, name))
        return None if stored is None else copy.deepcopy(stored)

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        if self.secret_failure is not None:
            raise self.secret_failure
        if (namespace, body["metadata"]["name"]) in self.secrets:
            return False
        self.secrets[namespace, body["metadata"]["name"]] = copy.deepcopy(body)
        return True

    async def review_token(self, token: str, audiences: list[str]) -> dict[str, Any] | None:
        self.token_reviews.append(token)
        self.reviewed_audiences.append(list(audiences))
        found = self.users.get(token)
        if found is None or not set(found[1]) & set(audiences):
            return None
        return copy.deepcopy(found[0])

    async def may(self, user: dict[str, Any], access: dict[str, str]) -> bool:
        self.access_reviews.append(access)
        who, name = user.get("username", ""), access.get("name", "")
        return any(
            (who, access["verb"], access["resource"], namespace, name) in self.grants
            for namespace in (access["namespace"], "*")
        )

    async def close(self) -> None:
        """Nothing to let go of."""
