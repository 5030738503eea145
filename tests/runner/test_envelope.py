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

from schedexec_runner import bounds, envelope
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
    with pytest.raises(EnvelopeError, match=r"not JSON this operator reads: .* the limit of 64 levels"):
        envelope.decode(nested)
    deeper = '{"v": 1, "outcome": "done", "result": ' + "[" * 100_000 + "]" * 100_000 + "}"
    packed = envelope.COMPRESSED_PREFIX + base64.b64encode(zlib.compress(deeper.encode(), 9)).decode()
    assert len(packed) < envelope.MAX_BYTES
    with pytest.raises(EnvelopeError, match="the limit of 64 levels"):
        envelope.decode(packed)
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
        ('"items": 3', "schedule envelope has unknown keys 'items'"),
    ],
)
def test_invalid_schedule_keys_are_refused_with_a_clear_reason(keys: str, complaint: str) -> None:
    with pytest.raises(EnvelopeError, match=re.escape(complaint)):
        envelope.decode(SCHEDULE + ", " + keys + "}")


@pytest.mark.parametrize("key", ['"command": "x"', '"timeoutInSeconds": 5', '"itemsRemaining": 1'])
def test_the_new_keys_belong_to_schedule_only(key: str) -> None:
    with pytest.raises(EnvelopeError, match="unknown keys"):
        envelope.decode('{"v": 1, "outcome": "done", "result": 1, ' + key + "}")


def nested(levels: int) -> Any:
    """A JSON value `levels` deep: arrays in arrays around an object."""
    value: Any = {"leaf": 1}
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("build", "what"),
    [
        (lambda deep: envelope.done(deep), "done.result"),
        (lambda deep: envelope.schedule(30, {"cursor": deep}), "schedule.args"),
        (lambda deep: envelope.schedule(30, {}, deep), "schedule.partialResult"),
    ],
)
def test_a_result_or_args_nested_deeper_than_64_levels_is_refused_naming_the_limit(build: Any, what: str) -> None:
    """The operator stores these in the execution's status; pydantic and json give up a few hundred levels
    down. 64 levels are accepted, 65 are not, on the runner's side (encode) and on the operator's (decode)."""
    assert bounds.depth(nested(64)) == 64
    assert envelope.decode(envelope.encode(build(nested(63)))) == build(nested(63))  # args add one level
    deep = build(nested(65))
    with pytest.raises(EnvelopeError, match=re.escape(f"{what} nests deeper than 64 levels")):
        envelope.encode(deep)
    with pytest.raises(EnvelopeError, match=re.escape(f"{what} nests deeper than 64 levels")):
        envelope.decode(json.dumps(deep))


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('{"v": 1, "outcome": "done", "result": "\\ud800"}', "done.result holds a string that is not valid Unicode"),
        ('{"v": 1, "outcome": "done", "result": {"\\udfff": 1}}', "done.result holds a key that is not valid Unicode"),
        ('{"v": 1, "outcome": "done", "result": [["x\\ud83d"]]}', "done.result holds a string"),
        ('{"v": 1, "outcome": "schedule", "nextRunInSeconds": 5, "args": {"a": "\\ud800"}}', "schedule.args holds"),
        (
            '{"v": 1, "outcome": "schedule", "nextRunInSeconds": 5, "args": {}, "partialResult": "\\ud800"}',
            "schedule.partialResult holds",
        ),
        ('{"v": 1, "outcome": "error", "reason": "Boom", "message": "\\ud800"}', "error.message holds a string"),
        ('{"v": 1, "outcome": "error", "reason": "Boom\\ud800", "message": "x"}', "error.reason must be a CamelCase"),
        ('{"v": 1, "outcome": "done", "result": 1, "\\ud800": 1}', "unknown keys '\\ud800'"),
        ('{"v": 1, "outcome": "\\ud800"}', "unknown outcome '\\ud800'"),
    ],
)
def test_a_lone_surrogate_anywhere_is_refused_and_never_quoted_as_is(text: str, complaint: str) -> None:
    """JSON may escape a lone surrogate; Python decodes it to a str that cannot be written as UTF-8, so the
    operator could store neither it nor a message that quoted it."""
    with pytest.raises(EnvelopeError, match=re.escape(complaint)) as refused:
        envelope.decode(text)
    str(refused.value).encode("utf-8")


def test_a_lone_surrogate_in_a_result_is_refused_on_the_runners_side_too() -> None:
    with pytest.raises(EnvelopeError, match="not valid Unicode"):
        envelope.encode(envelope.done({"name": "caf\udce9"}))


def test_an_error_message_with_a_lone_surrogate_keeps_its_reason() -> None:
    """An exception's text may carry bytes it could not decode (surrogateescape); the run still fails with
    its own reason, the surrogate written as its escape."""
    outcome = envelope.error("ShopUnavailable", "the shop said caf\udce9")
    assert envelope.decode(envelope.encode(outcome)) == envelope.error("ShopUnavailable", "the shop said caf\\udce9")


@pytest.mark.parametrize(
    ("reason", "accepted"),
    [
        ("A" * 128, True),
        ("A" * 129, False),
        ("Boom\n", False),  # `$` matches before a final newline; a condition's reason may not hold one
        ("Boom Boom", False),
        ("boom", False),
    ],
)
def test_an_error_reason_is_one_camel_case_word_of_at_most_128_characters(reason: str, accepted: bool) -> None:
    text = json.dumps(envelope.error(reason, "x"))
    if accepted:
        assert envelope.decode(text)["reason"] == reason
    else:
        with pytest.raises(EnvelopeError, match="CamelCase word of at most 128 characters"):
            envelope.decode(text)


def test_a_schedule_command_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(EnvelopeError, match=re.escape("schedule.command must be a method name")):
        envelope.decode(SCHEDULE + ', "command": "poll\\n"}')


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_they_are_not_json(constant: str) -> None:
    """Python's json reads them; the API server refuses a status that holds them, on every retry."""
    with pytest.raises(EnvelopeError, match=f"{constant} is not JSON"):
        envelope.decode('{"v": 1, "outcome": "done", "result": {"x": ' + constant + "}}")
    with pytest.raises(EnvelopeError, match="which JSON cannot express"):
        envelope.encode(envelope.done({"x": float(constant)}))


def test_a_refusal_quotes_only_a_short_piece_of_what_it_refuses() -> None:
    """The reason ends up in the execution's status: a huge or deeply nested value is described, not
    copied (its repr would bloat the status or recurse past Python's limit)."""
    many_keys = {"v": 1, "outcome": "done", "result": 1, **{f"k{i}": i for i in range(10_000)}}
    deep_version = '{"v": ' + "[" * 900 + "]" * 900 + ', "outcome": "done", "result": 1}'
    long_command = {**envelope.schedule(30, {}), "command": ["x" * 100_000]}
    messages = []
    for refused in (json.dumps(many_keys), deep_version, json.dumps(long_command)):
        with pytest.raises(EnvelopeError) as caught:
            envelope.decode(refused)
        messages.append(str(caught.value))
    assert all(len(message) < 300 for message in messages), messages
    assert "and 9995 more" in messages[0]


def test_a_compressed_envelope_that_is_not_even_ascii_is_refused_not_crashed() -> None:
    """base64 raises ValueError, not binascii.Error, for text that is not ASCII (found by
    tests/unit/test_poison_properties.py)."""
    with pytest.raises(EnvelopeError, match="corrupt"):
        envelope.decode(envelope.COMPRESSED_PREFIX + "\ud800é")


@pytest.mark.parametrize(
    ("written", "typed"),
    [
        (envelope.done({"verified": True}), envelope.Done({"verified": True})),
        (envelope.done(None), envelope.Done(None)),
        (envelope.schedule(0, {}), envelope.Schedule(0, {})),
        (
            envelope.schedule(30, {"cursor": "abc"}, partial_result={"jobId": "42"}),
            envelope.Schedule(30, {"cursor": "abc"}, partial_result={"jobId": "42"}),
        ),
        (
            envelope.schedule(30, {}, command="fetch-report", timeout_in_seconds=900, items_remaining=0),
            envelope.Schedule(30, {}, command="fetch-report", timeout_in_seconds=900, items_remaining=0),
        ),
        (  # a null partial result is a value (it clears the one shown), unlike none at all
            {**envelope.schedule(5, {}), "partialResult": None},
            envelope.Schedule(5, {}, partial_result=None),
        ),
        (envelope.error("ShopUnavailable", "503 from shop"), envelope.Failure("ShopUnavailable", "503 from shop")),
    ],
)
def test_an_envelope_is_read_into_its_typed_outcome(written: dict[str, Any], typed: envelope.Outcome) -> None:
    assert envelope.parse(written) == typed
    assert envelope.read(envelope.encode(written)) == typed


def test_a_schedule_without_a_partial_result_says_it_has_none() -> None:
    assert envelope.parse(envelope.schedule(5, {})).partial_result is envelope.ABSENT  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "written",
    [{"v": 1, "outcome": "done"}, {"v": 1, "outcome": "schedule", "nextRunInSeconds": -1, "args": {}}, [1]],
)
def test_parse_refuses_what_validate_refuses(written: Any) -> None:
    with pytest.raises(EnvelopeError):
        envelope.parse(written)
