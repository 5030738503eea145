"""elastic.io `fields` the REST API sealed in a Secret (issue 25, item 3), as the runner hands them over.

The API keeps verify-credential's fields (and a cfg sent without a named
credential) out of the execution's args: they travel in the credentials
Secret under contract.CONFIG_KEY, and the args keep only their salted
digest. Here the API's own `sealing.seal` makes the Secret's content, so the
two sides of the contract are checked against each other: the component sees
its cfg as elastic.io gives it (args, and the text values in ctx.credentials
too), a Secret planted under the name with other content is refused before
the component runs, and no value of the cfg survives in what the run reports.
"""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedexec import models
from schedexec.api import sealing
from schedexec_runner import contract, envelope
from schedexec_runner.main import run
from tests.runner.test_runner import COMPONENTS, env

CANARY = "canary-sealed-4b1d"


@pytest.fixture(autouse=True)
def _components_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(COMPONENTS))


def sealed(fields: dict[str, Any]) -> sealing.Sealed:
    spec = models.ScheduledExecutionSpec(
        component=models.ComponentSpec(image="reg/test:dev"), method="verifyCredentials", args=fields
    )
    return sealing.seal(spec, "schedexec-config-test", "a-salt")


def run_sealed(
    folder: Path, fields: dict[str, Any], method: str, content: bytes | None = None, **values: str
) -> dict[str, Any]:
    """One run of `method` whose args the API sealed from `fields`; `content`: what the Secret holds instead
    of the sealed configuration (a planted Secret)."""
    seal = sealed(fields)
    mount = folder / "credentials"
    mount.mkdir(parents=True, exist_ok=True)
    (mount / contract.CONFIG_KEY).write_bytes(seal.content if content is None else content)
    environ = env(folder, json.dumps(seal.spec.args), **{contract.CREDENTIALS_DIR: str(mount), contract.METHOD: method})
    return run({**environ, **values})


def test_the_sealed_args_name_only_a_digest_and_the_secret_holds_the_fields() -> None:
    seal = sealed({"apiKey": CANARY})
    assert seal.spec.args == {contract.CONFIG_DIGEST: sha256(seal.content).hexdigest()}
    assert seal.spec.credentials_secret_ref == models.LocalObjectReference(name="schedexec-config-test")
    assert CANARY not in json.dumps(seal.spec.model_dump(mode="json"))
    assert json.loads(seal.content)["args"] == {"apiKey": CANARY}


def test_verify_credentials_sees_the_fields_it_was_sent_and_verifies(tmp_path: Path) -> None:
    fields = {"apiKey": CANARY, "expectedSha256": sha256(CANARY.encode()).hexdigest()}
    assert run_sealed(tmp_path, fields, "verifyCredentials") == envelope.done({"verified": True})


def test_a_refused_credential_is_redacted_from_the_reason(tmp_path: Path) -> None:
    outcome = run_sealed(tmp_path, {"apiKey": CANARY, "expectedSha256": "other"}, "verifyCredentials")
    assert outcome["result"] == {"verified": False, "reason": "the api key *** was refused"}


def test_the_component_gets_the_fields_as_its_args_without_the_digest(tmp_path: Path) -> None:
    fields = {"apiKey": CANARY, "nested": {"list": [1, "two"]}, "port": 443}
    outcome = run_sealed(tmp_path, fields, "digest")
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert outcome["result"]["sha256"] == sha256(canonical).hexdigest()


@pytest.fixture
def echoing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A careless command: fails with its whole args in the message (a traceback of a request dump)."""
    import testcomponent

    def echo(args: dict[str, Any], ctx: Any) -> Any:
        raise RuntimeError(f"request failed: {json.dumps(args, ensure_ascii=False)} with {dict(ctx.credentials)}")

    monkeypatch.setitem(testcomponent.component.commands, "echo-args", echo)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secret=st.text(st.characters(codec="utf-8", exclude_characters="\x00*"), min_size=3, max_size=40).filter(
        lambda s: s.strip() == s and len(s) >= 3
    ),
    where=st.sampled_from(["top", "nested"]),
)
def test_any_value_of_the_fields_is_redacted_from_an_error_a_component_raises(
    tmp_path_factory: pytest.TempPathFactory, echoing: None, secret: str, where: str
) -> None:
    fields: dict[str, Any] = {"apiKey": secret} if where == "top" else {"apiKey": "x", "auth": {"tokens": [secret]}}
    folder = tmp_path_factory.mktemp("run")
    outcome = run_sealed(folder, fields, "echo-args")
    assert outcome["reason"] == "ComponentError"
    assert secret not in json.dumps(outcome, ensure_ascii=False), outcome


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (json.dumps({"salt": "a-salt", "args": {"apiKey": "the-attackers"}}).encode(), "the Secret was replaced"),
        (b"", "the Secret was replaced"),
    ],
    ids=["planted", "empty"],
)
def test_a_secret_that_is_not_the_sealed_one_is_refused_before_the_component_runs(
    tmp_path: Path, content: bytes, detail: str
) -> None:
    fields = {"apiKey": CANARY, "expectedSha256": sha256(b"the-attackers").hexdigest()}
    outcome = run_sealed(tmp_path, fields, "verifyCredentials", content=content)
    assert outcome["outcome"] == "error" and outcome["reason"] == "CredentialsUnavailable"
    assert detail in outcome["message"] and "the-attackers" not in outcome["message"]


def test_args_naming_a_digest_without_the_sealed_file_are_refused(tmp_path: Path) -> None:
    mount = tmp_path / "credentials"
    mount.mkdir()
    args = json.dumps({contract.CONFIG_DIGEST: "0" * 64})
    outcome = run(env(tmp_path, args, **{contract.CREDENTIALS_DIR: str(mount), contract.METHOD: "verifyCredentials"}))
    assert outcome["reason"] == "CredentialsUnavailable" and contract.CONFIG_KEY in outcome["message"]
