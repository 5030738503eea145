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
    """docs/runner-contract.md: what a component in another language writes (slices of 4000 characters,
    the last one shorter)."""
    import base64
    import hashlib
    import random
    import zlib

    rng = random.Random(7)
    noise = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(5000))
    raw = json.dumps({"v": 1, "outcome": "done", "result": noise}).encode()
    data = base64.b64encode(zlib.compress(raw)).decode()
    assert 4000 < len(data) <= 8000
    nonce = "0123456789abcdef0123456789abcdef"
    sha = hashlib.sha256(raw).hexdigest()
    log = (
        f"schedexec-frame {nonce} begin {len(raw)} {sha}\n"
        f"schedexec-frame {nonce} 1 {data[:4000]}\nschedexec-frame {nonce} 2 {data[4000:]}\n"
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


NONCE, SHA = "ab" * 16, "cd" * 32


def pointer_text(**changes: object) -> str:
    return frame.LOGGED_PREFIX + json.dumps({"nonce": NONCE, "bytes": 100_000, "sha256": SHA, "lines": 20, **changes})


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"bytes": -1}, "bytes must be from 0 to 67108864"),
        ({"bytes": 64 * 1024 * 1024 + 1}, "bytes must be from 0 to 67108864"),
        ({"bytes": 10**30}, "bytes must be from 0"),
        ({"lines": 0}, "lines must be from 1 to"),
        ({"lines": 30_000_000}, "lines must be from 1 to 34, the most 100000 bytes can need"),
        ({"bytes": 10, "lines": 2}, "lines must be from 1 to 1,"),
        ({"nonce": "AB" * 16}, "nonce must be 32 lowercase hex"),
        ({"nonce": "ab" * 15}, "nonce must be 32 lowercase hex"),
        ({"nonce": "ab" * 16 + "\n"}, "nonce must be 32 lowercase hex"),
        ({"sha256": "CD" * 32}, "sha256 must be 64 lowercase hex"),
        ({"sha256": "cd" * 33}, "sha256 must be 64 lowercase hex"),
    ],
)
def test_a_pointer_out_of_range_is_refused_before_anything_is_read(changes: dict[str, object], complaint: str) -> None:
    """The termination message is the component's: a pointer that claims 30 million lines for a small
    result, or an odd nonce, never reaches pods/log."""
    assert frame.pointer(pointer_text()) is not None
    with pytest.raises(frame.FrameError, match=complaint):
        frame.pointer(pointer_text(**changes))


def test_a_pointer_nested_past_pythons_parser_is_a_frame_error() -> None:
    """A 4 KiB termination message can nest 2000 deep: json.loads raises RecursionError, not ValueError."""
    with pytest.raises(frame.FrameError, match="not valid JSON"):
        frame.pointer(frame.LOGGED_PREFIX + "[" * 2000 + "]" * 2000)


@pytest.mark.parametrize("size", [0, 1, 100, 2_999, 3_000, 3_001, 12_000, 299_999, 1_000_000])
def test_every_frame_the_runner_writes_has_as_many_lines_as_its_pointer_may_claim(size: int) -> None:
    """Incompressible bytes are zlib's worst case: their frame still fits `max_lines`."""
    import random

    raw = random.Random(size).randbytes(size)
    message = frame.write(raw, io.StringIO(), NONCE)
    where = frame.pointer(message)
    assert where is not None and where["lines"] <= frame.max_lines(size)


def test_reading_a_forged_frame_allocates_nothing_in_proportion_to_the_lines_it_claims() -> None:
    import tracemalloc

    where = {"nonce": NONCE, "bytes": 10, "sha256": SHA, "lines": 3_000_000}  # as if pointer() had let it by
    log = f"schedexec-frame {NONCE} begin 10 {SHA}\nschedexec-frame {NONCE} end 3000000\n"
    tracemalloc.start()
    try:
        with pytest.raises(frame.FrameError):
            frame.read(log, where, 1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_a_frame_after_megabytes_of_output_is_read_without_splitting_them() -> None:
    import tracemalloc

    log, where = framed()
    chatter = "progress 42%\n" * 1_500_000  # about 20 MB of short lines before the frame
    whole = chatter + log
    tracemalloc.start()
    try:
        assert frame.read(whole, where, 1 << 20) == RAW
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(RAW) + 1024 * 1024, "about the frame's size, not the log's"


def test_a_frame_after_output_without_a_final_newline_is_found() -> None:
    """A component that printed without a newline: its last words and the begin line share a log line."""
    log, where = framed()
    begin = f"schedexec-frame {NONCE} begin"
    assert frame.read(log.replace(begin, "50% done... " + begin), where, 1 << 20) == RAW


def test_a_log_with_bytes_that_are_not_utf8_is_read_once_decoded_with_replacement() -> None:
    """The operator decodes the pod log with errors="replace"; the frame's lines are ASCII."""
    log, where = framed()
    raw_log = b"binary \xff\xfe\x80 noise\n" + log.encode() + b"\xc3 after\n"
    assert frame.read(raw_log.decode("utf-8", errors="replace"), where, 1 << 20) == RAW


def kubelet_tail(log: str, tail_lines: int, limit_bytes: int) -> str:
    """What pods/log answers with tailLines and limitBytes: the last lines, then at most that many bytes."""
    lines = log.splitlines(keepends=True)[-tail_lines:]
    return "".join(lines).encode()[:limit_bytes].decode("utf-8", errors="replace")


@pytest.mark.parametrize("line_before", ["progress\n", "x" * (frame.MAX_LOG_LINE_BYTES - 1) + "\n"])
def test_a_frame_is_read_from_the_tail_of_the_log_whatever_came_before(line_before: str) -> None:
    """The operator asks for tail_lines(pointer) lines and log_bytes(pointer) bytes: enough for the frame
    after any amount of earlier output (the runner's summary line follows the frame), and for the longest
    lines a container runtime keeps before it."""
    log, where = framed()
    earlier = line_before * (2 * frame.TAIL_SLACK_LINES)
    tail = kubelet_tail(earlier + log, frame.tail_lines(where), frame.log_bytes(where))
    assert frame.read(tail, where, 1 << 20) == RAW
    assert frame.tail_lines(where) == where["lines"] + 2 + frame.TAIL_SLACK_LINES


def test_the_tail_asked_for_stays_proportionate_to_the_result() -> None:
    small = {"nonce": NONCE, "bytes": 5_000, "sha256": SHA, "lines": frame.max_lines(5_000)}
    largest = {"nonce": NONCE, "bytes": frame.MAX_FRAME_BYTES, "sha256": SHA, "lines": frame.max_lines(64 << 20)}
    assert frame.tail_lines(small) == 20 and frame.log_bytes(small) < 300 * 1024
    assert frame.tail_lines(largest) < 23_000 and frame.log_bytes(largest) < 100 * 1024 * 1024


def test_a_frame_slice_holding_a_replacement_character_is_refused_not_crashed() -> None:
    """Log bytes that were not UTF-8 inside the frame itself become U+FFFD: base64 raises ValueError."""
    log, where = framed()
    first = f"schedexec-frame {NONCE} 1 "
    with pytest.raises(frame.FrameError, match="longer than 4000 characters"):
        frame.read(log.replace(first, first + "A", 1), where, 1 << 20)
    with pytest.raises(frame.FrameError, match="does not decode"):
        start = log.index(first) + len(first)
        frame.read(log[:start] + "\ufffd" + log[start + 1 :], where, 1 << 20)
