"""The outcome envelope: every outcome, compression, the size limit, garbage input."""

from __future__ import annotations

import base64
import json
import random
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
