"""Generated input for the property tests: executions the API server admits, and what a component can write.

The table-driven tests hold the cases someone thought of; users and components write the others. So the specs
here are derived from the CRD's own OpenAPI schema (crds/, which the models generate): `strategy_for` walks it
and lets hypothesis-jsonschema generate every leaf, so what is generated is what the API server would store,
lengths, ranges, patterns and enums included, and no more. What the schema cannot say to hypothesis-jsonschema
is handled here, each in one place:

- `x-kubernetes-preserve-unknown-fields` nodes without properties (spec.args) hold any JSON: `any_json`, which
  also produces what a hand-written example never does: nesting a few hundred levels deep, lone surrogates
  ("\\ud800", which Python's JSON parser makes from an escape), strings of hundreds of KiB. Other x-kubernetes-*
  keys are dropped.
- Integers without a maximum are int64 on the API server: bounded to it, with the range's edges and powers of
  ten drawn often (`_integer_edges`).
- CEL rules (`x-kubernetes-validations`) cannot be evaluated by hypothesis-jsonschema. The API server first
  applies the schema's defaults (`apply_defaults`), then evaluates the rules; on create only the rules without
  `oldSelf` apply (the others are transition rules). `admitted_by_cel` mirrors exactly those
  (`CEL_RULES_ON_CREATE`, which a test compares with the CRD so the mirror cannot go stale) and filters the
  generated specs, as does etcd's size limit (MAX_OBJECT_BYTES). The models' own cross-field validator is
  deliberately not the filter: a spec the CRD admits and the models refuse is a drift the tests must see.

What a component can write when its run ends (`component_outputs`): a termination message (a valid envelope of
each shape around generated JSON, plain or `schedexec-zlib:` compressed, near-miss envelopes, invalid or
deeply nested JSON, corrupt or oversized compressed payloads, `schedexec-logged:` frame pointers with real
frames in the log or arbitrary ints such as lines=30000000, random bytes and text) and its exit code.
The executions' metadata is builders.METADATA, the same fixed metadata as the table-driven tests' executions.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from schedexec_runner import contract, envelope, frame
from tests.unit.builders import METADATA

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
KIND, VERSION = "ScheduledExecution", "v1alpha1"
"""models.KIND and models.VERSION (a test checks)."""
RUN_CONTAINER = "run"
"""manifests.CONTAINER, the run's container in its pod (a test checks)."""
INT64 = (-(2**63), 2**63 - 1)
"""What the API server stores for an `integer` without bounds of its own."""

# --- the CRD's schema, as strategies ---------------------------------------------------------------------


@functools.cache
def crd_schema(version: str = VERSION) -> dict[str, Any]:
    """The openAPIV3Schema of ScheduledExecution `version`, as committed under crds/."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            if document["spec"]["names"]["kind"] != KIND:
                continue
            for served in document["spec"]["versions"]:
                if served["name"] == version:
                    return served["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]
    raise LookupError(f"no CRD for {KIND} {version} under {CRD_DIR}")


def spec_schema() -> dict[str, Any]:
    return crd_schema()["properties"]["spec"]  # type: ignore[no-any-return]


def status_schema() -> dict[str, Any]:
    return crd_schema()["properties"]["status"]  # type: ignore[no-any-return]


def strategy_for(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values `node` admits, as the API server validates them.

    Objects and arrays are walked here and every leaf is hypothesis-jsonschema's: version 0.23.1 (the latest)
    cannot build objects with the Hypothesis this project runs (its object strategy calls `many.more()`, a
    private method Hypothesis removed). A free-JSON node becomes `any_json`; x-kubernetes-* keys go; lengths,
    ranges, patterns (with JavaScript's `$`) and enums stay."""
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return any_json_objects() if node.get("type") == "object" else any_json()
    kind = node.get("type")
    if kind == "object" and "properties" in node:
        # a structural schema prunes unknown fields, so only the declared ones are ever stored
        children = {name: strategy_for(child) for name, child in node["properties"].items()}
        return _objects(children, frozenset(node.get("required", ())))
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        return st.dictionaries(
            st.text(),
            strategy_for(node["additionalProperties"]),
            min_size=node.get("minProperties", 0),
            max_size=node.get("maxProperties"),
        )
    if kind == "array":
        return st.lists(strategy_for(node["items"]), min_size=node.get("minItems", 0), max_size=node.get("maxItems"))
    if kind == "integer":
        return from_schema(leaf_schema(node)) | st.sampled_from(_integer_edges(leaf_schema(node)))
    if kind in ("string", "boolean", "number"):
        return from_schema(leaf_schema(node))
    raise NotImplementedError(f"no strategy for the schema node {dict(node)!r:.200}")


@st.composite
def _objects(draw: st.DrawFn, children: Mapping[str, st.SearchStrategy[Any]], required: frozenset[str]) -> Any:
    """An object with every required property and each optional one half the time (hypothesis' own
    fixed_dictionaries leaves most optional keys out, and so most of the spec untested)."""
    return {name: draw(child) for name, child in children.items() if name in required or draw(st.booleans())}


def _integer_edges(schema: Mapping[str, Any]) -> list[int]:
    """The ends of an integer's range and the powers of ten within it: hypothesis-jsonschema rarely draws a
    large value from a range as wide as int64, and large values are where arithmetic on them overflows."""
    low, high = schema["minimum"], schema["maximum"]
    return sorted({low, high} | {10**k for k in range(19) if low <= 10**k <= high})


def leaf_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A scalar node as plain JSON Schema: unbounded integers are int64, as the API server stores them."""
    converted = {
        key: value
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key not in ("description", "default")
    }
    if node.get("type") == "integer":
        converted.setdefault("minimum", INT64[0])
        converted.setdefault("maximum", INT64[1])
    return converted


def apply_defaults(node: Mapping[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, as the API server does before it validates and stores."""
    if isinstance(value, dict) and "properties" in node:
        filled = dict(value)
        for name, child in node["properties"].items():
            if name not in filled and "default" in child:
                filled[name] = child["default"]
            if name in filled:
                filled[name] = apply_defaults(child, filled[name])
        return filled
    if isinstance(value, list) and isinstance(node.get("items"), Mapping):
        return [apply_defaults(node["items"], item) for item in value]
    return value


CEL_RULES_ON_CREATE = frozenset(
    {
        f"self.method != '{contract.GET_META_MODEL}' || has(self.module)",
        f"self.method != '{contract.SELECT_MODEL}' || has(self.__function__)",
        "!has(self.runTimeoutSeconds) || !has(self.timeoutSeconds) || self.runTimeoutSeconds <= self.timeoutSeconds",
        "!has(self.component.runtime) || self.component.runtime != 'elasticio' || self.method in "
        f"['{contract.VERIFY_CREDENTIALS}', '{contract.GET_META_MODEL}', '{contract.SELECT_MODEL}']",
    }
)
"""The spec's CEL rules that apply when an execution is created (every other rule reads oldSelf), mirrored by
`admitted_by_cel`."""


def admitted_by_cel(spec: Mapping[str, Any]) -> bool:
    """`CEL_RULES_ON_CREATE` on a defaulted spec (`has(x)`: the key is present)."""
    if spec["method"] == contract.GET_META_MODEL and "module" not in spec:
        return False
    if spec["method"] == contract.SELECT_MODEL and "function" not in spec:
        return False
    component = spec.get("component") or {}
    elasticio = component.get("runtime") == "elasticio"
    service_methods = (contract.VERIFY_CREDENTIALS, contract.GET_META_MODEL, contract.SELECT_MODEL)
    if elasticio and (spec["method"] not in service_methods or "command" in component):
        return False  # the spec's rule, and spec.component's first (docs/runner-contract.md, elasticio)
    if "elasticio" in component and not elasticio:
        return False  # spec.component's second rule
    both = "runTimeoutSeconds" in spec and "timeoutSeconds" in spec
    return not (both and spec["runTimeoutSeconds"] > spec["timeoutSeconds"])


# --- any JSON: what a preserve-unknown-fields node or a component's outcome may hold -----------------------

LONE_SURROGATES = ("\ud800", "\udfff", "ok \ud83d", "\udc00 tail")
"""Strings that are not valid Unicode: JSON's "\\ud800" escape parses to them, UTF-8 cannot encode them."""

MAX_DEEP_CHAIN = 400
"""Deepest nesting generated: past pydantic's serialiser (about 250), short of Python's json module (about
1,000), which a component's own JSON encoder would reach first."""


@functools.cache
def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any text: all of Unicode (a lone surrogate one time in ten) and, one time in ten, hundreds of KiB."""
    return _texts(max_size)


@st.composite
def _texts(draw: st.DrawFn, max_size: int) -> str:
    kind = draw(st.integers(0, 9))  # shrinks towards ordinary text
    if kind == 9:
        return draw(st.sampled_from(LONE_SURROGATES))
    if kind == 8:
        return draw(large_texts())
    return draw(st.text(st.characters(exclude_categories=[]), max_size=max_size))


@functools.cache
def large_texts(max_chars: int = 300_000) -> st.SearchStrategy[str]:
    """Long, repetitive text (so it still compresses into a termination message)."""
    return st.builds(
        lambda unit, size: (unit * (size // len(unit) + 1))[:size],
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=3),
        st.integers(1_000, max_chars),
    )


@functools.cache
def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(*INT64),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
    )


def _chain(depth: int, shape: int, leaf: Any, key: str) -> Any:
    """`leaf` under `depth` levels of objects and arrays (bit i of `shape` chooses level i's kind); iterative."""
    value = leaf
    for level in range(depth):
        value = {key: value} if shape >> (level % 64) & 1 else [value]
    return value


@functools.cache
def deep_chains(max_depth: int = MAX_DEEP_CHAIN) -> st.SearchStrategy[Any]:
    return st.builds(
        _chain,
        st.integers(1, max_depth),
        st.integers(0, 2**64 - 1),
        scalars(),
        st.text(max_size=3) | st.sampled_from(LONE_SURROGATES),
    )


@functools.cache
def any_json() -> st.SearchStrategy[Any]:
    """Any JSON value Python's json module reads from a document: shallow and wide, or deep chains."""
    shallow = st.recursive(
        scalars(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(texts(8), children, max_size=4),
        max_leaves=12,
    )
    return st.one_of(shallow, deep_chains())


@functools.cache
def any_json_objects() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.dictionaries(texts(8), any_json(), max_size=4),
        st.builds(lambda key, value: {key: value}, texts(8), deep_chains()),
    )


# --- executions the API server admits ---------------------------------------------------------------------


MAX_OBJECT_BYTES = 1536 * 1024
"""etcd's limit on one request (--max-request-bytes, 1.5 MiB by default): a larger object is never stored."""


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@functools.cache
def _spec_values() -> st.SearchStrategy[dict[str, Any]]:
    return strategy_for(spec_schema())


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """A spec as the API server stores it on create: admitted by the schema and the CEL rules, defaulted.

    Two nudges towards the interesting paths, both within what the API server admits: the well-known methods
    (a regex rarely spells them), and `cancel` mostly false (a cancelled execution ends at its first step)."""
    spec = draw(_spec_values())
    if "podTemplate" in spec:
        # its CEL rules sit on nested nodes, which strategy_for does not evaluate: drawn as admitted instead
        from tests.unit import podtemplates  # here: podtemplates builds on this module

        spec["podTemplate"] = draw(podtemplates.admitted())
    known = draw(
        st.none() | st.sampled_from([contract.GET_META_MODEL, contract.SELECT_MODEL, contract.VERIFY_CREDENTIALS])
    )
    if known is not None:
        spec["method"] = known
    if spec.get("cancel"):
        spec["cancel"] = draw(st.sampled_from([False, False, True]))
    spec = apply_defaults(spec_schema(), spec)
    if not admitted_by_cel(spec) or _size(spec) > MAX_OBJECT_BYTES:
        reject()
    return spec  # type: ignore[no-any-return]


def execution_body(spec: Mapping[str, Any], status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The object as the operator reads it from the API server."""
    return {
        "apiVersion": f"schedexec.io/{VERSION}",
        "kind": KIND,
        "metadata": dict(METADATA),
        "spec": dict(spec),
        "status": dict(status or {}),
    }


# --- what a component writes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """What a run's container leaves: its termination message, exit code, and log (for a frame pointer)."""

    message: str
    exit_code: int
    log: str = ""


@functools.cache
def exit_codes() -> st.SearchStrategy[int]:
    return st.sampled_from([0, 0, 0, 1, 2, contract.EXIT_NOT_REPORTED, 137, 143, 255]) | st.integers(
        -(2**31), 2**31 - 1
    )


@functools.cache
def reasons() -> st.SearchStrategy[str]:
    """CamelCase error reasons, including ones far longer than any condition reason should be."""
    return st.from_regex(r"\A[A-Z][A-Za-z0-9]{0,30}\Z") | large_texts().map(lambda text: "R" * len(text))


@functools.cache
def method_names() -> st.SearchStrategy[str]:
    return st.from_regex(r"\A[A-Za-z][A-Za-z0-9_.:-]{0,40}\Z") | st.just("m" * contract.METHOD_MAX_LENGTH)


@functools.cache
def done_envelopes() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(envelope.done, any_json())


@functools.cache
def schedule_envelopes() -> st.SearchStrategy[dict[str, Any]]:
    return _schedule_envelopes()


@st.composite
def _schedule_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    return envelope.schedule(
        draw(st.integers(0, envelope.MAX_NEXT_RUN_SECONDS)),
        draw(any_json_objects()),
        draw(st.none() | any_json()),
        command=draw(st.none() | method_names()),
        timeout_in_seconds=draw(st.none() | st.integers(1, envelope.MAX_TIMEOUT_SECONDS)),
        items_remaining=draw(st.none() | st.integers(0, envelope.MAX_ITEMS_REMAINING)),
    )


@functools.cache
def error_envelopes() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(envelope.error, reasons(), texts() | large_texts())


@functools.cache
def valid_envelopes() -> st.SearchStrategy[dict[str, Any]]:
    """Envelopes of the three shapes, their values any JSON: what a component's SDK would write. Whether the
    operator accepts deep, huge or non-Unicode contents is for its limits to say (the properties only ask
    that it fails such an execution cleanly)."""
    return st.one_of(done_envelopes(), schedule_envelopes(), error_envelopes())


@st.composite
def near_miss_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A valid envelope with one key changed to, or added as, something else (v=2, v=true, counts out of range)."""
    shaped = dict(draw(valid_envelopes()))
    key = draw(st.sampled_from([*shaped, "v", "nextRunInSeconds", "timeoutInSeconds", "itemsRemaining", "extra"]))
    shaped[key] = draw(
        st.sampled_from([2, True, 1.0, -1, 2**63, 10**30, None, "1", [], {}]) | any_json(),
    )
    return shaped


def _json(value: Any, ascii_only: bool) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)
    except RecursionError:
        return "null"  # deeper than a component's own encoder goes: it never writes this


def plain(value: Any, ascii_only: bool = True) -> str:
    return _json(value, ascii_only)


def compressed(value: Any) -> str:
    raw = _json(value, True).encode("ascii")
    return envelope.COMPRESSED_PREFIX + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def _b64z(raw: bytes) -> str:
    return envelope.COMPRESSED_PREFIX + base64.b64encode(zlib.compress(raw)).decode("ascii")


@functools.cache
def corrupt_compressed() -> st.SearchStrategy[str]:
    prefix = envelope.COMPRESSED_PREFIX
    return st.one_of(
        st.binary(max_size=64).map(lambda raw: prefix + base64.b64encode(raw).decode("ascii")),  # not zlib
        st.binary(max_size=64).map(_b64z),  # not UTF-8 JSON
        st.just(_b64z(b" " * (envelope.MAX_DECOMPRESSED_BYTES + 1))),  # a small bomb
        st.just(_b64z(b"[" * 100_000 + b"]" * 100_000)),  # deep JSON, compressed
        st.just(_b64z(b'{"v":1,"outcome":"done","result":"\\ud800"}')),
    )


def _nested(pair: tuple[str, str], depth: int, cut: int) -> str:
    text = pair[0] * depth + "1" + pair[1] * depth
    return text[: len(text) - cut]


@functools.cache
def deeply_nested_text() -> st.SearchStrategy[str]:
    """JSON nested up to 100,000 levels (the API server allows 10,000 in objects; a message is any text), whole
    or with its last characters cut."""
    depths = st.sampled_from([1, 64, 65, 255, 256, 1_000, 10_000, 10_001, 100_000]) | st.integers(1, 100_000)
    return st.builds(_nested, st.sampled_from([("[", "]"), ('{"a":', "}")]), depths, st.integers(0, 3))


@functools.cache
def pointer_values() -> st.SearchStrategy[dict[str, Any]]:
    """Frame pointers with any values, e.g. lines=30000000 or bytes larger than any log."""
    ints = st.sampled_from([0, -1, 1, 30_000_000, 2**31, 2**63, 10**30]) | st.integers()
    return st.fixed_dictionaries(
        {},
        optional={
            "nonce": st.text(max_size=40) | st.sampled_from(["ab" * 16]),
            "bytes": ints | any_json(),
            "sha256": st.text(max_size=70),
            "lines": ints | any_json(),
        },
    )


@st.composite
def framed_outputs(draw: st.DrawFn) -> Output:
    """A pointer and the real frame it points at in the log, written as the runner writes it; maybe cut."""
    value = draw(valid_envelopes() | near_miss_envelopes())
    text = _json(value, draw(st.booleans()))
    raw = text.encode("utf-8", "surrogatepass")
    log = io.StringIO()
    log.write(draw(st.text(max_size=30)) + "\n")
    message = frame.write(raw, log, nonce=draw(st.sampled_from(["ab" * 16, None])))
    lines = log.getvalue().splitlines(keepends=True)
    cut = draw(st.sampled_from(["none", "none", "head", "tail", "middle"]))
    if cut == "head":
        lines = lines[len(lines) // 2 :]
    elif cut == "tail":
        lines = lines[: len(lines) // 2]
    elif cut == "middle" and len(lines) > 3:
        del lines[2]
    return Output(message, draw(exit_codes()), "".join(lines))


@functools.cache
def envelope_messages() -> st.SearchStrategy[str]:
    """Valid envelopes as a run reports them: plain JSON (non-ASCII escaped or not) or compressed."""
    return st.one_of(st.builds(plain, valid_envelopes(), st.booleans()), valid_envelopes().map(compressed))


@functools.cache
def pointer_messages() -> st.SearchStrategy[str]:
    """`schedexec-logged:` followed by a pointer with any values, or by any other text or JSON."""
    logged = frame.LOGGED_PREFIX
    return st.one_of(
        pointer_values().map(lambda where: logged + _json(where, True)),
        st.one_of(texts(), deeply_nested_text(), any_json().map(lambda v: _json(v, True))).map(lambda t: logged + t),
    )


@functools.cache
def garbage_messages() -> st.SearchStrategy[str]:
    """Termination messages that are no valid envelope: near misses, other JSON, corrupt or oversized
    compressed payloads, deep nesting, frame pointers of any content, random bytes and text."""
    packed = envelope.COMPRESSED_PREFIX
    return st.one_of(
        st.builds(plain, near_miss_envelopes(), st.booleans()),
        near_miss_envelopes().map(compressed),
        st.builds(plain, any_json(), st.booleans()),  # JSON, but no envelope
        corrupt_compressed(),
        texts().map(lambda text: packed + text),  # not base64, maybe not ASCII
        deeply_nested_text(),
        pointer_messages(),
        st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", "surrogateescape")),  # bytes a kubelet passes on
        st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
        texts(),
    )


@functools.cache
def termination_messages() -> st.SearchStrategy[str]:
    """Any text a run's container may leave as its termination message: half valid envelopes, half not."""
    return st.one_of(envelope_messages(), garbage_messages())


@functools.cache
def component_outputs() -> st.SearchStrategy[Output]:
    """What a run's container leaves when it ends: a third each reported outcomes (mostly exit 0), garbage
    (any exit code), and outcomes framed in the log."""
    return st.one_of(
        st.builds(Output, envelope_messages(), st.just(0) | exit_codes()),
        st.builds(Output, garbage_messages(), exit_codes()),
        framed_outputs(),
    )


@functools.cache
def run_outputs() -> st.SearchStrategy[Output]:
    """`component_outputs`, and as often a reported schedule (so that simulated sequences poll on for several
    runs instead of mostly ending at the first) or a reported error (whose reason and message end up in status)."""
    scheduled = st.one_of(schedule_envelopes().map(plain), schedule_envelopes().map(compressed))
    failed = st.one_of(error_envelopes().map(plain), error_envelopes().map(compressed))
    return st.one_of(
        st.builds(Output, scheduled, st.just(0)), st.builds(Output, failed, st.just(0)), component_outputs()
    )


# --- Jobs and pods, as the API server reports them ------------------------------------------------------


def job(condition: str | None = None, reason: str | None = None, **counts: int) -> dict[str, Any]:
    """A run's Job: `condition` Complete or Failed (with the Job controller's `reason`), or active."""
    status: dict[str, Any] = dict(counts)
    if condition is not None:
        status["conditions"] = [{"type": condition, "status": "True", "reason": reason, "message": f"{reason}"}]
    return {"metadata": {"name": "sx1-r1", "uid": "job-uid"}, "status": status}


MAX_MESSAGE_BYTES = 4096
"""What the kubelet keeps of a termination message; the API server then replaces bytes that are not UTF-8 (a
cut character, a lone surrogate) with U+FFFD."""


def as_reported(message: str) -> str:
    """`message` as a pod's status reports it: cut to MAX_MESSAGE_BYTES, invalid UTF-8 replaced."""
    return message.encode("utf-8", "surrogatepass")[:MAX_MESSAGE_BYTES].decode("utf-8", "replace")


def terminated_pod(
    output: Output, name: str = "sx1-r1-abcde", finished: str = "2026-11-23T12:00:01Z", reported: bool = True
) -> dict[str, Any]:
    """A run's pod whose container ended leaving `output`: its message `as_reported`, or as written (any text,
    for properties that must hold for any string)."""
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-11-23T12:00:00Z"},
        "status": {
            "phase": "Succeeded" if output.exit_code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": RUN_CONTAINER,
                    "state": {
                        "terminated": {
                            "exitCode": output.exit_code,
                            "message": as_reported(output.message) if reported else output.message,
                            "reason": "Completed" if output.exit_code == 0 else "Error",
                            "finishedAt": finished,
                        }
                    },
                }
            ],
        },
    }


JOB_FAILURE_REASONS = ("BackoffLimitExceeded", "DeadlineExceeded", "PodFailurePolicy", None)


def finished_jobs(output: Output) -> st.SearchStrategy[dict[str, Any]]:
    """The Job of a run whose pod left `output`, as the Job controller ends it."""
    if output.exit_code == 0:
        return st.just(job("Complete", "CompletionsReached", succeeded=1))
    return st.builds(
        lambda reason, failed: job("Failed", reason, failed=failed),
        st.sampled_from(JOB_FAILURE_REASONS),
        st.integers(1, 11),
    )


WAITING_REASONS = (
    "ContainerCreating",
    "PodInitializing",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CrashLoopBackOff",
)


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@st.composite
def active_pods(draw: st.DrawFn, now: datetime) -> list[dict[str, Any]]:
    """The pods of an active run's Job at `now`: none yet, one the scheduler refuses or has not placed, or one
    on a node whose container waits (messages as the API server passes them on: valid Unicode, maybe long)."""
    kind = draw(st.sampled_from(["none", "unscheduled", "unschedulable", "waiting", "running"]))
    if kind == "none":
        return []
    since = _stamp(now - timedelta(seconds=draw(st.integers(0, 3600))))
    message = draw(st.text(max_size=60) | large_texts(20_000))
    pod: dict[str, Any] = {
        "metadata": {"name": "sx1-r1-abcde", "uid": "pod-uid", "creationTimestamp": since},
        "spec": {"containers": [{"name": RUN_CONTAINER, "image": draw(st.text(max_size=30))}]},
        "status": {"phase": "Pending"},
    }
    if kind == "unschedulable":
        pod["status"]["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastTransitionTime": since,
            }
        ]
        return [pod]
    if kind == "unscheduled":
        return [pod]
    pod["spec"]["nodeName"] = "node-1"
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": since}]
    state = (
        {"running": {"startedAt": since}}
        if kind == "running"
        else {"waiting": {"reason": draw(st.sampled_from(WAITING_REASONS)), "message": message}}
    )
    pod["status"]["containerStatuses"] = [{"name": RUN_CONTAINER, "state": state}]
    if kind == "running":
        pod["status"]["phase"] = "Running"
    return [pod]
