"""The log frame for large outcomes: what a component without the SDK writes, what the operator accepts."""

from __future__ import annotations

import io
import json

import pytest

from schedexec_runner import envelope, frame

RAW = json.dumps(envelope.done({"schema": "x" * 50_000, "n": list(range(2000))})).encode()


def framed(raw: bytes = RAW, nonce: str = "ab" * 16) -> tuple[str, dict[str, object]]:
    log = io.StringIO()
    log.write("component says hello\nschedexec-frame deadbeef begin 1 00\n")  # noise, another nonce
    message = frame.write(raw, log, nonce)
    log.write("schedexec-runner: ns/x run 1: done\n")
    where = frame.pointer(message)
    assert where is not None
    return log.getvalue(), where


def test_a_frame_round_trips_with_noise_around_it() -> None:
    log, where = framed()
    assert frame.read(log, where, 1024 * 1024) == RAW
    assert all(len(line) < 4100 for line in log.splitlines()), "bounded chunk lines"


def test_a_frame_written_by_hand_as_the_contract_describes_is_accepted() -> None:
    """docs/runner-contract.md: what a component in another language writes."""
    import base64
    import hashlib
    import zlib

    raw = b'{"v":1,"outcome":"done","result":{"ok":true}}'
    data = base64.b64encode(zlib.compress(raw)).decode()
    nonce = "0123456789abcdef0123456789abcdef"
    sha = hashlib.sha256(raw).hexdigest()
    log = (
        f"schedexec-frame {nonce} begin {len(raw)} {sha}\n"
        f"schedexec-frame {nonce} 1 {data[:10]}\nschedexec-frame {nonce} 2 {data[10:]}\n"
        f"schedexec-frame {nonce} end 2\n"
    )
    message = "schedexec-logged:" + json.dumps({"nonce": nonce, "bytes": len(raw), "sha256": sha, "lines": 2})
    where = frame.pointer(message)
    assert where is not None and frame.read(log, where, 1 << 20) == raw


def cut_last_lines(log: str) -> str:
    return "\n".join(log.splitlines()[:-3])


def swap_two_chunks(log: str) -> str:
    lines = log.splitlines()
    first = next(i for i, line in enumerate(lines) if " 1 " in line and line.startswith("schedexec-frame abab"))
    lines[first], lines[first + 1] = lines[first + 1], lines[first]
    return "\n".join(lines)


def flip_a_character(log: str) -> str:
    lines = log.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("schedexec-frame abab") and " 2 " in line)
    head, data = lines[i].rsplit(" ", 1)
    lines[i] = f"{head} {data[:-5]}{'A' if data[-5] != 'A' else 'B'}{data[-4:]}"
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (cut_last_lines, "truncated"),
        (swap_two_chunks, "out of order"),
        (flip_a_character, "does not decode|sha256"),  # either way refused
        (lambda log: "", "no frame with this run's nonce"),
    ],
)
def test_a_truncated_or_tampered_frame_is_refused_with_the_reason(damage: object, message: str) -> None:
    log, where = framed()
    with pytest.raises(frame.FrameError, match=message):
        frame.read(damage(log), where, 1024 * 1024)  # type: ignore[operator]


def test_a_pointer_that_lies_about_the_hash_or_the_size_is_refused() -> None:
    log, where = framed()
    with pytest.raises(frame.FrameError, match="sha256"):
        frame.read(log, {**where, "sha256": "0" * 64}, 1 << 20)
    with pytest.raises(frame.FrameError, match="the termination message says"):
        frame.read(log, {**where, "bytes": len(RAW) - 1}, 1 << 20)
    with pytest.raises(frame.FrameError, match="the limit is 1000 bytes"):
        frame.read(log, where, 1000)


@pytest.mark.parametrize(
    "message", ['schedexec-logged:{"nonce": 1}', "schedexec-logged:not json", "schedexec-logged:[]"]
)
def test_a_malformed_pointer_is_refused(message: str) -> None:
    with pytest.raises(frame.FrameError):
        frame.pointer(message)
    assert frame.pointer('{"v":1,"outcome":"done","result":1}') is None
