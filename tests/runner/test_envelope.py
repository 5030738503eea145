"""The outcome envelope: every outcome, compression, the size limit, garbage input."""

from __future__ import annotations

import base64
import json
import random
import re
import string
import zlib
from typing import Any

import pytest

from schedexec_runner import envelope
from schedexec_runner.envelope import EnvelopeError


@pytest.mark.parametrize(
    "outcome",
    [
        envelope.done({"verified": True}),
        envelope.done(None),
        envelope.done("ü ✓ text"),
        envelope.schedule(30, {"cursor": "abc"}, partial_result={"jobId": "42"}),
        envelope.schedule(0, {}),
        envelope.error("ShopUnavailable", "503 from shop"),
    ],
)
def test_every_outcome_round_trips(outcome: dict[str, Any]) -> None:
    text = envelope.encode(outcome)
    assert len(text.encode()) <= envelope.MAX_BYTES
    assert envelope.decode(text) == outcome


def test_large_but_compressible_envelopes_are_compressed_and_fit() -> None:
    outcome = envelope.done({"items": [{"id": i, "name": "category"} for i in range(500)]})
    assert len(json.dumps(outcome)) > envelope.MAX_BYTES
    text = envelope.encode(outcome)
    assert text.startswith(envelope.COMPRESSED_PREFIX)
    assert len(text.encode()) <= envelope.MAX_BYTES
    assert envelope.decode(text) == outcome


def test_an_envelope_too_large_even_compressed_becomes_result_too_large() -> None:
    rng = random.Random(1)
    noise = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(20000))
    decoded = envelope.decode(envelope.encode(envelope.done(noise)))
    assert decoded["outcome"] == "error"
    assert decoded["reason"] == "ResultTooLarge"
    assert "limit is 4096 bytes" in decoded["message"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 2, "outcome": "done", "result": 1}', "version"),
        ('{"v": 1, "outcome": "maybe"}', "unknown outcome"),
        ('{"v": 1, "outcome": "done"}', "lacks result"),
        ('{"v": 1, "outcome": "done", "result": 1, "extra": 2}', "unknown keys"),
        ('{"v": 1, "outcome": "schedule", "nextRunInSeconds": -1, "args": {}}', "integer from 0"),
        ('{"v": 1, "outcome": "schedule", "nextRunInSeconds": true, "args": {}}', "integer from 0"),
        ('{"v": 1, "outcome": "schedule", "nextRunInSeconds": 5, "args": []}', "args must be"),
        ('{"v": 1, "outcome": "error", "reason": "lower case", "message": "x"}', "CamelCase"),
        ('{"v": 1, "outcome": "error", "reason": "Boom", "message": 3}', "message must be"),
        (envelope.COMPRESSED_PREFIX + "!!!notbase64", "corrupt"),
        (envelope.COMPRESSED_PREFIX + base64.b64encode(b"not zlib").decode(), "corrupt"),
    ],
)
def test_garbage_is_refused_with_a_clear_reason(text: str, complaint: str) -> None:
    with pytest.raises(EnvelopeError, match=complaint):
        envelope.decode(text)


def test_a_decompression_bomb_is_refused() -> None:
    bomb = envelope.COMPRESSED_PREFIX + base64.b64encode(zlib.compress(b" " * (1024 * 1024), 9)).decode()
    assert len(bomb) <= envelope.MAX_BYTES * 8
    with pytest.raises(EnvelopeError, match="inflates past"):
        envelope.decode(bomb)


def test_deeply_nested_json_and_absurd_waits_are_refused_not_crashed() -> None:
    nested = '{"v": 1, "outcome": "done", "result": ' + "[" * 2000 + "]" * 2000 + "}"
    assert len(nested) < envelope.MAX_BYTES
    with pytest.raises(EnvelopeError, match="not JSON"):
        envelope.decode(nested)
    with pytest.raises(EnvelopeError, match="nextRunInSeconds"):
        envelope.decode('{"v": 1, "outcome": "schedule", "nextRunInSeconds": 1000000000000, "args": {}}')


SCHEDULE = '{"v": 1, "outcome": "schedule", "nextRunInSeconds": 30, "args": {}'


@pytest.mark.parametrize(
    ("keywords", "keys"),
    [
        ({}, {}),
        ({"command": "sandbox-get-report"}, {"command": "sandbox-get-report"}),
        ({"command": "ns:get_report.v2"}, {"command": "ns:get_report.v2"}),
        ({"command": "x" * 253}, {"command": "x" * 253}),
        ({"timeout_in_seconds": 1}, {"timeoutInSeconds": 1}),
        ({"timeout_in_seconds": envelope.MAX_TIMEOUT_SECONDS}, {"timeoutInSeconds": envelope.MAX_TIMEOUT_SECONDS}),
        ({"items_remaining": 0}, {"itemsRemaining": 0}),
        ({"items_remaining": envelope.MAX_ITEMS_REMAINING}, {"itemsRemaining": envelope.MAX_ITEMS_REMAINING}),
        (
            {"command": "poll", "timeout_in_seconds": 25, "items_remaining": 3},
            {"command": "poll", "timeoutInSeconds": 25, "itemsRemaining": 3},
        ),
    ],
)
def test_a_schedule_carries_the_rest_of_xsoars_scheduled_command(
    keywords: dict[str, Any], keys: dict[str, Any]
) -> None:
    outcome = envelope.schedule(30, {"id": 1}, {"job": "j"}, **keywords)
    assert outcome == {
        "v": 1,
        "outcome": "schedule",
        "nextRunInSeconds": 30,
        "args": {"id": 1},
        "partialResult": {"job": "j"},
        **keys,
    }
    assert envelope.decode(envelope.encode(outcome)) == outcome


def test_the_schedule_helper_leaves_out_what_is_not_given() -> None:
    assert envelope.schedule(30, {}, command=None, timeout_in_seconds=None, items_remaining=None) == {
        "v": 1,
        "outcome": "schedule",
        "nextRunInSeconds": 30,
        "args": {},
    }


@pytest.mark.parametrize(
    ("keys", "complaint"),
    [
        ('"command": ""', "schedule.command must be a method name"),
        ('"command": "-leading-dash"', "schedule.command must be a method name"),
        ('"command": "with space"', "schedule.command must be a method name"),
        ('"command": "semi;colon"', "schedule.command must be a method name"),
        ('"command": "' + "x" * 254 + '"', "at most 253 characters"),
        ('"command": 7', "schedule.command must be a method name"),
        ('"command": null', "schedule.command must be a method name"),
        ('"timeoutInSeconds": 0', "schedule.timeoutInSeconds must be an integer from 1 to 604800"),
        ('"timeoutInSeconds": -5', "schedule.timeoutInSeconds must be an integer from 1"),
        ('"timeoutInSeconds": 604801', "schedule.timeoutInSeconds must be an integer from 1 to 604800"),
        ('"timeoutInSeconds": 2.5', "schedule.timeoutInSeconds must be an integer"),
        ('"timeoutInSeconds": true', "schedule.timeoutInSeconds must be an integer"),
        ('"timeoutInSeconds": "600"', "schedule.timeoutInSeconds must be an integer"),
        ('"itemsRemaining": -1', "schedule.itemsRemaining must be an integer from 0 to 2147483647"),
        ('"itemsRemaining": 2147483648', "schedule.itemsRemaining must be an integer from 0"),
        ('"itemsRemaining": false', "schedule.itemsRemaining must be an integer"),
        ('"itemsRemaining": null', "schedule.itemsRemaining must be an integer"),
        ('"items": 3', "schedule envelope has unknown keys items"),
    ],
)
def test_invalid_schedule_keys_are_refused_with_a_clear_reason(keys: str, complaint: str) -> None:
    with pytest.raises(EnvelopeError, match=re.escape(complaint)):
        envelope.decode(SCHEDULE + ", " + keys + "}")


@pytest.mark.parametrize("key", ['"command": "x"', '"timeoutInSeconds": 5', '"itemsRemaining": 1'])
def test_the_new_keys_belong_to_schedule_only(key: str) -> None:
    with pytest.raises(EnvelopeError, match="unknown keys"):
        envelope.decode('{"v": 1, "outcome": "done", "result": 1, ' + key + "}")
