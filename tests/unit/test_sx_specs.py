"""`kubectl sx run` and `resubmit`: executions from flags, manifests and old executions, --args and the
command line (schedexec.sx.specs, schedexec.sx.main's parser)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from schedexec import models
from schedexec.sx import specs
from schedexec.sx.main import parser
from schedexec.sx.timing import parse_duration

objects = st.dictionaries(st.text(max_size=10), st.none() | st.integers() | st.text(max_size=10), max_size=5)


def no_file(path: str) -> str:
    raise AssertionError("no file is read")


@given(objects)
def test_args_are_a_json_object_given_inline(args: dict[str, Any]) -> None:
    assert specs.parse_args_value(json.dumps(args), no_file) == args


@given(objects)
def test_args_at_a_file_are_read_from_it_as_json_or_yaml(args: dict[str, Any]) -> None:
    for text in (json.dumps(args), yaml.safe_dump(args)):
        assert specs.parse_args_value("@args.json", {"args.json": text}.__getitem__) == args


def test_args_in_a_file_that_is_not_json_nor_loadable_yaml_are_one_clear_error() -> None:
    with pytest.raises(specs.SpecError, match=r"--args @a.yaml is neither JSON nor YAML"):
        specs.parse_args_value("@a.yaml", {"a.yaml": "when: 2024-13-45\n"}.__getitem__)


def test_text_that_is_not_utf8_is_one_clear_error() -> None:
    assert specs.decoded("ü".encode(), "m.yaml") == "ü"
    with pytest.raises(specs.SpecError, match=r"^m.yaml is not UTF-8 text \(byte 2: invalid start byte\)$"):
        specs.decoded(b"a:\xff", "m.yaml")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1, 2]", "--args must be a JSON object"),
        ('"text"', "--args must be a JSON object"),
        ("{shopUrl: x}", "--args is not valid JSON"),
        ("@missing.json", "--args @missing.json: cannot read missing.json"),
    ],
)
def test_bad_args_are_one_clear_error(value: str, message: str) -> None:
    def missing(path: str) -> str:
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(specs.SpecError, match=message):
        specs.parse_args_value(value, missing)


def test_a_run_from_flags_is_the_spec_with_a_generated_name() -> None:
    body = specs.execution_from_flags(
        image="shop:1", method="selectModel", function="getCategories", args={"a": 1}, credentials="creds",
        timeout_seconds=60, run_timeout_seconds=30,
    )  # fmt: skip
    assert body["metadata"] == {"generateName": "selectmodel-"}
    assert body["spec"] == {
        "component": {"image": "shop:1"},
        "method": "selectModel",
        "function": "getCategories",
        "args": {"a": 1},
        "credentialsSecretRef": {"name": "creds"},
        "timeoutSeconds": 60,
        "runTimeoutSeconds": 30,
    }
    models.ScheduledExecution.model_validate({**body, "metadata": {"name": "x"}})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"method": "getMetaModel"}, "spec.module is required when method is getMetaModel"),
        ({"method": "selectModel"}, r"spec.function \(the select-model function\) is required"),
        ({"method": "m", "timeout_seconds": 10, "run_timeout_seconds": 20}, "must not exceed spec.timeoutSeconds"),
        ({"method": "has space"}, "spec.method: String should match pattern"),
    ],
)
def test_a_spec_the_api_server_would_refuse_is_refused_first_naming_the_field(
    flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(specs.SpecError, match=message):
        specs.execution_from_flags(image="i", **flags)


@given(st.text(max_size=80))
def test_generated_names_are_dns_labels(text: str) -> None:
    base = specs.generated_base(text)
    assert base.endswith("-") and len(base) <= specs.GENERATED_PREFIX_LIMIT + 1
    assert all(c.islower() or c.isdigit() or c == "-" for c in base if c.isascii()) and base.isascii()
    assert base[0] != "-"


def test_a_manifest_without_a_name_gets_a_generated_one(tmp_path: Path) -> None:
    example = (Path(__file__).parents[2] / "examples" / "sandbox" / "detonate.yaml").read_text()
    body = specs.execution_from_manifest(example, "detonate.yaml")
    assert body["metadata"]["name"] == yaml.safe_load(example)["metadata"]["name"]
    unnamed = yaml.safe_load(example)
    del unnamed["metadata"]["name"]
    body = specs.execution_from_manifest(yaml.safe_dump(unnamed), "x.yaml")
    assert body["metadata"]["generateName"] == specs.generated_base(unnamed["spec"]["method"])


HEAD = "kind: ScheduledExecution\napiVersion: schedexec.io/v1alpha1\n"
SPEC = "spec: {component: {image: i}, method: poll}\n"


@pytest.mark.parametrize("metadata", ["metadata:\n", "metadata: null\n", "metadata: {}\n", ""])
def test_a_manifest_with_empty_metadata_gets_a_generated_name(metadata: str) -> None:
    body = specs.execution_from_manifest(f"{HEAD}{metadata}{SPEC}", "m.yaml")
    assert body["metadata"] == {"generateName": "poll-"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: ConfigMap\napiVersion: v1\n", "expected one ScheduledExecution, found 0"),
        ("kind: ScheduledExecution\napiVersion: schedexec.io/v1\nspec: {}\n", "apiVersion must be"),
        ("kind: ScheduledExecution\napiVersion: schedexec.io/v1alpha1\n", "spec is missing"),
        ("{", "not YAML or JSON"),
        (f"{HEAD}metadata: [a]\n{SPEC}", "metadata must be a mapping, not list"),
        (f"{HEAD}metadata: {{name: 12}}\n{SPEC}", "metadata.name must be a string, not int"),
        (f"{HEAD}metadata: {{generateName: [x]}}\n{SPEC}", "metadata.generateName must be a string, not list"),
        (f"{HEAD}metadata: {{labels: {{at: 2024-13-45}}}}\n{SPEC}", "not YAML or JSON: month must be in 1..12"),
        ("[" * 10_000, "not YAML or JSON"),
    ],
)
def test_a_wrong_manifest_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(specs.SpecError, match=message):
        specs.execution_from_manifest(text, "m.yaml")


def test_a_resubmission_has_the_old_spec_uncancelled_and_new_args() -> None:
    old = {
        "metadata": {"name": "detonate", "labels": {"team": "a"}, "uid": "u", "resourceVersion": "9"},
        "spec": {"component": {"image": "i"}, "method": "poll", "args": {"sample": "old"}, "cancel": True},
        "status": {"phase": "Cancelled"},
    }
    new = specs.resubmission(old, {"sample": "new"})
    assert new["metadata"] == {
        "generateName": "detonate-",
        "annotations": {specs.RESUBMITTED_FROM: "detonate"},
        "labels": {"team": "a"},
    }
    assert new["spec"] == {"component": {"image": "i"}, "method": "poll", "args": {"sample": "new"}}
    assert "status" not in new
    assert specs.resubmission(old)["spec"]["args"] == {"sample": "old"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-n", "ns", "wait", "x"], {"namespace": "ns", "name": "x", "timeout": None}),
        (["wait", "x", "-n", "ns", "--timeout", "2m"], {"namespace": "ns", "timeout": 120.0}),
        (["--context", "c", "logs", "x", "--run", "2", "-f"], {"context": "c", "run": 2, "follow": True}),
        (["result", "x", "-o", "raw"], {"output": "raw", "namespace": None}),
        (["run", "--image", "i", "--method", "m", "--timeout", "10m", "--wait"], {"timeout": 600, "wait": True}),
        (["resubmit", "old", "--args", "@a.json", "--kubeconfig", "k"], {"run_args": "@a.json", "kubeconfig": "k"}),
    ],
)
def test_common_flags_go_before_or_after_the_command(argv: list[str], expected: dict[str, Any]) -> None:
    options = vars(parser().parse_args(argv))
    assert {key: options[key] for key in expected} == expected


def test_a_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["result", "x", "-o", "xml"])
    assert exited.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)])
def test_durations_as_kubectl_takes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "5x", "m5", "5m junk"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("command", ["run", "wait", "result", "logs", "describe", "cancel", "resubmit"])
def test_every_command_has_examples_in_its_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "examples:" in shown and f"kubectl sx {command} " in shown
