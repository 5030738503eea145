"""The XSOAR integration context in a schedule envelope (`context`): what the runner writes, the operator reads
into `Schedule.context`, within MAX_CONTEXT_BYTES, never quoted in an error message nor shown in a repr (it may
hold tokens)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedexec_runner import envelope, main
from schedexec_runner.envelope import EnvelopeError

TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=40)
CONTEXTS = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20) | TOKENS,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
        max_leaves=8,
    ),
    max_size=5,
)


@settings(deadline=None, max_examples=200)
@given(context=CONTEXTS, token=TOKENS)
def test_a_context_round_trips_into_the_typed_schedule_and_stays_out_of_its_repr(
    context: dict[str, Any], token: str
) -> None:
    context = {**context, "auth_info": {"token": token}}
    written = envelope.schedule(30, {"id": 1}, command="poll", context=context)
    outcome = envelope.read(envelope.encode(written))
    assert isinstance(outcome, envelope.Schedule)
    assert outcome.context == context
    assert (outcome.args, outcome.command) == ({"id": 1}, "poll")
    assert token not in repr(outcome)


def test_a_schedule_without_a_context_leaves_the_kept_one_unchanged() -> None:
    outcome = envelope.read(envelope.encode(envelope.schedule(5, {})))
    assert isinstance(outcome, envelope.Schedule) and outcome.context is None
    assert "context" not in envelope.schedule(5, {})


@pytest.mark.parametrize("context", [[], "token", 7, None, True])
def test_a_context_that_is_not_an_object_is_refused(context: Any) -> None:
    text = json.dumps({**envelope.schedule(5, {}), "context": context})
    with pytest.raises(EnvelopeError, match=re.escape("schedule.context must be a JSON object")):
        envelope.decode(text)


def test_a_context_over_the_limit_is_refused_naming_its_size_never_its_content() -> None:
    secret = "s3cr3t" * (envelope.MAX_CONTEXT_BYTES // 6 + 1)
    with pytest.raises(EnvelopeError) as refused:
        envelope.parse({**envelope.schedule(5, {}), "context": {"token": secret}})
    size = envelope.context_bytes({"token": secret})
    assert str(refused.value) == f"schedule.context is {size} bytes of JSON; at most {envelope.MAX_CONTEXT_BYTES}"
    envelope.parse({**envelope.schedule(5, {}), "context": {"t": "x" * (envelope.MAX_CONTEXT_BYTES - 8)}})


def test_a_context_the_api_server_could_not_store_is_refused_without_quoting_it() -> None:
    for context, complaint in [({"k": "\ud800"}, "not valid Unicode"), ({"k": float("nan")}, "JSON cannot express")]:
        with pytest.raises(EnvelopeError, match=re.escape(complaint)):
            envelope.parse({**envelope.schedule(5, {}), "context": context})


@pytest.mark.parametrize("outcome", [envelope.done(1), envelope.error("Broken", "no")])
def test_only_a_schedule_carries_a_context(outcome: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError, match="unknown keys 'context'"):
        envelope.parse({**outcome, "context": {"token": "t"}})


def test_a_credential_value_in_an_integration_context_is_redacted_before_it_leaves_the_pod() -> None:
    """The context crosses the pod's termination message (readable with `get pods`): a credential value in it is
    redacted like one in the args or the result (the integration then finds `***` there, never the secret)."""
    secret = "s3cr3t-Pa55w0rd-xyz"
    outcome = envelope.schedule(30, {"a": secret}, context={"api_key": secret, "token": "kept"})
    redacted = main.redact(outcome, {"password": secret})
    assert secret not in json.dumps(redacted)
    assert redacted["context"] == {"api_key": "***", "token": "kept"}
