"""The elastic.io runtime (issue 29, part 1): the spec's rules, the run's pod, and the receiver that turns
sailor's POST into the run's envelope (schedexec_runner.elasticio)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import http.client
import json
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schedexec import manifests, models
from schedexec.api import specs
from schedexec.settings import ApiSettings
from schedexec_runner import contract, envelope, frame
from schedexec_runner import elasticio as receiver
from tests.unit.builders import POD_DEFAULTS
from tests.unit.test_adoption import created

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def elastic(method: str = "verifyCredentials", **component: Any) -> models.ScheduledExecution:
    spec: dict[str, Any] = {
        "component": {"image": "acme/petstore:1", "runtime": "elasticio", **component},
        "method": method,
        "args": {"status": "sold"},
        "credentialsSecretRef": {"name": "petstore-key"},
    }
    if method != "verifyCredentials":
        spec |= {"module": "getPetsByStatus", "function": "getStatusModel"}
    return models.ScheduledExecution.model_validate(
        {"metadata": {"name": "pets", "namespace": "ns", "uid": "0d4c8f56-0000-4000-8000-0000000000e1"}, "spec": spec}
    )


def pod(execution: models.ScheduledExecution) -> dict[str, Any]:
    job = manifests.job_manifest(execution, 1, dict(execution.spec.args), POD_DEFAULTS)
    return job["spec"]["template"]["spec"]  # type: ignore[no-any-return]


# --- the spec ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["process", "sync"])
def test_elasticio_runs_only_sailors_service_methods(method: str) -> None:
    with pytest.raises(ValidationError, match="verifyCredentials, getMetaModel, selectModel"):
        elastic(method)


def test_elasticio_takes_no_command_and_elasticio_needs_the_runtime() -> None:
    with pytest.raises(ValidationError, match=r"spec\.component\.command is not taken"):
        elastic(command=["node", "x.js"])
    with pytest.raises(ValidationError, match=r"needs spec\.component\.runtime elasticio"):
        models.ComponentSpec(image="x", elasticio=models.ElasticioComponent())


def test_the_crd_carries_the_same_rules() -> None:
    crd = json.dumps(models.ScheduledExecution.model_json_schema(by_alias=True))
    for rule in models.COMPONENT_RULES:
        assert json.dumps(rule["rule"])[1:-1] in crd
    assert json.dumps(models.ELASTICIO_METHOD_MESSAGE)[1:-1] in crd


def test_the_component_map_gives_the_runtime() -> None:
    settings = ApiSettings.model_validate(
        {
            "components": {
                "petstore": {"image": "acme/petstore:{revision}", "runtime": "elasticio", "component_path": "/app"}
            }
        }
    )
    component = specs.component_spec(settings, "petstore", "latest")
    assert (component.runtime, component.elasticio) == ("elasticio", models.ElasticioComponent(component_path="/app"))
    assert specs.component_template(settings, "petstore") is None
    with pytest.raises(ValidationError, match="needs runtime elasticio"):
        ApiSettings.model_validate({"components": {"x": {"image": "x", "component_path": "/app"}}})


# --- the run's pod -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", models.ELASTICIO_METHODS)
def test_the_component_runs_sailor_through_the_launcher(method: str) -> None:
    spec = pod(elastic(method))
    (component,) = spec["containers"]
    assert component["image"] == "acme/petstore:1"
    assert component["command"] == ["node", "-e", receiver.LAUNCHER, method]
    env = {e["name"]: e["value"] for e in component["env"]}
    assert env["ELASTICIO_POST_RESULT_URL"] == f"http://127.0.0.1:{receiver.DEFAULT_PORT}/"
    assert env["ELASTICIO_COMPONENT_PATH"] == component["workingDir"] == "/home/node"
    for name in ("ELASTICIO_API_URI", "ELASTICIO_API_USERNAME", "ELASTICIO_API_KEY"):
        assert env[name], "sailor asserts them present"
    if method != "verifyCredentials":
        assert (env["ELASTICIO_ACTION_OR_TRIGGER"], env["ELASTICIO_GET_MODEL_METHOD"]) == (
            "getPetsByStatus",
            "getStatusModel",
        )
    assert "ELASTICIO_CFG" not in env, "the cfg (credentials) is never in the Job"


def test_only_the_receiver_sees_the_args_and_the_secret() -> None:
    spec = pod(elastic())
    (component,), (sidecar,) = spec["containers"], spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always", "a native sidecar: up before sailor, stopped after it"
    assert sidecar["image"] == POD_DEFAULTS.elasticio_receiver_image
    assert sidecar["command"] == ["schedexec-elasticio-receiver"]
    mounted = {m["name"] for m in component["volumeMounts"]}
    assert mounted == {"tmp", manifests.ELASTICIO_VOLUME}
    assert {m["name"] for m in sidecar["volumeMounts"]} >= {
        manifests.CREDENTIALS_VOLUME,
        manifests.ARGS_VOLUME,
        manifests.ELASTICIO_VOLUME,
    }
    shared = next(v for v in spec["volumes"] if v["name"] == manifests.ELASTICIO_VOLUME)
    assert shared["emptyDir"]["medium"] == "Memory", "the cfg holds credentials: never on the node's disk"
    for container in (component, sidecar):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
    assert spec["automountServiceAccountToken"] is False


def test_the_component_path_is_the_specs() -> None:
    (component,) = pod(elastic(elasticio={"componentPath": "/app"}))["containers"]
    env = {e["name"]: e["value"] for e in component["env"]}
    assert env["ELASTICIO_COMPONENT_PATH"] == component["workingDir"] == "/app"


def test_the_pod_templates_env_reaches_the_component_not_the_receiver() -> None:
    execution = elastic()
    execution.spec.pod_template = models.RunPodTemplate(env=[models.EnvVar(name="HTTPS_PROXY", value="http://p:3128")])
    spec = pod(execution)
    assert {"name": "HTTPS_PROXY", "value": "http://p:3128"} in spec["containers"][0]["env"]
    assert all(e["name"] != "HTTPS_PROXY" for e in spec["initContainers"][0]["env"])


def test_the_schedexec_runtime_is_unchanged() -> None:
    plain = elastic().model_copy(deep=True)
    plain.spec.component.runtime = None
    assert "initContainers" not in pod(plain)


def with_sidecar_defaults(job: dict[str, Any]) -> dict[str, Any]:
    job = created(job)
    for container in job["spec"]["template"]["spec"]["initContainers"]:
        container["terminationMessagePath"] = "/dev/termination-log"
    return job


def test_adoption_accepts_exactly_the_elasticio_pod() -> None:
    expected = manifests.job_manifest(elastic(), 1, {"status": "sold"}, POD_DEFAULTS)
    assert manifests.made_for(with_sidecar_defaults(expected), expected) is None
    planted = copy.deepcopy(expected)
    planted["spec"]["template"]["spec"]["initContainers"][0]["image"] = "evil/receiver:1"
    assert manifests.made_for(with_sidecar_defaults(planted), expected) is not None
    extra = copy.deepcopy(expected)
    extra["spec"]["template"]["spec"]["initContainers"][0]["args"] = ["--steal"]
    assert manifests.made_for(with_sidecar_defaults(extra), expected) is not None


# --- the receiver --------------------------------------------------------------------------------------------


@given(JSON_VALUES)
def test_any_success_post_is_a_done_result(data: Any) -> None:
    body = json.dumps({"status": "success", "data": data}).encode()
    result = receiver.outcome(body, {})
    envelope.validate(result)
    assert result == envelope.done(json.loads(json.dumps(data)))


@given(st.text(min_size=1))
def test_an_error_post_is_a_component_error_with_sailors_message(message: str) -> None:
    result = receiver.outcome(json.dumps({"status": "error", "data": {"message": message}}).encode(), {})
    envelope.validate(result)
    assert result == envelope.error("ComponentError", message)


@given(st.binary() | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_anything_else_sailor_may_post_is_a_valid_envelope(body: bytes) -> None:
    result = receiver.outcome(body, {})
    envelope.validate(result)
    posted = None
    with contextlib.suppress(ValueError):
        posted = json.loads(body)
    if not (isinstance(posted, dict) and posted.get("status") in ("success", "error")):
        assert result["outcome"] == envelope.ERROR and result["reason"] == "InvalidResult"


def test_verify_credentials_false_is_a_result_not_an_error() -> None:
    body = json.dumps({"status": "success", "data": {"verified": False, "reason": "API key is missing"}}).encode()
    assert receiver.outcome(body, {}) == envelope.done({"verified": False, "reason": "API key is missing"})


def test_credentials_are_redacted_from_what_sailor_posts() -> None:
    body = json.dumps({"status": "error", "data": {"message": "401 for key s3cr3t-key"}}).encode()
    assert receiver.outcome(body, {"apiKey": "s3cr3t-key"})["message"] == "401 for key ***"


def test_a_result_too_deep_is_refused_clearly() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    result = receiver.outcome(json.dumps({"status": "success", "data": deep}).encode(), {})
    assert result["outcome"] == envelope.ERROR and result["reason"] == "InvalidResult"


def inputs(tmp_path: Any, args: dict[str, Any], secret: dict[str, bytes]) -> dict[str, str]:
    (tmp_path / "args.json").write_text(json.dumps(args))
    (tmp_path / "secret").mkdir()
    for key, value in secret.items():
        (tmp_path / "secret" / key).write_bytes(value)
    (tmp_path / "shared").mkdir()
    return {
        contract.ARGS_FILE: str(tmp_path / "args.json"),
        contract.CREDENTIALS_DIR: str(tmp_path / "secret"),
        contract.METHOD: "verifyCredentials",
        receiver.DIR: str(tmp_path / "shared"),
    }


def test_the_cfg_is_the_args_with_the_secrets_keys(tmp_path: Any) -> None:
    environ = inputs(tmp_path, {"status": "sold", "apiKey": "from-args"}, {"apiKey": b"secret \n"})
    secrets = receiver.prepare(environ, tmp_path / "shared")
    cfg = json.loads((tmp_path / "shared" / receiver.CFG_FILE).read_text())
    assert cfg == {"status": "sold", "apiKey": "secret \n"}, "the Secret's key wins, byte for byte"
    assert secrets["apiKey"] == "secret \n"
    assert (tmp_path / "shared" / receiver.READY_FILE).exists()
    assert not (tmp_path / "shared" / receiver.OUTCOME_FILE).exists()


def test_the_cfg_holds_the_sealed_fields_of_the_rest_api(tmp_path: Any) -> None:
    config = json.dumps({"salt": "x", "args": {"apiKey": "sealed"}})
    digest = hashlib.sha256(config.encode()).hexdigest()
    environ = inputs(tmp_path, {contract.CONFIG_DIGEST: digest}, {contract.CONFIG_KEY: config.encode()})
    secrets = receiver.prepare(environ, tmp_path / "shared")
    assert json.loads((tmp_path / "shared" / receiver.CFG_FILE).read_text()) == {"apiKey": "sealed"}
    assert "sealed" in secrets.values()


def test_broken_inputs_are_reported_before_sailor_runs(tmp_path: Any) -> None:
    environ = inputs(tmp_path, {}, {})
    environ[contract.METHOD] = "process"
    receiver.prepare(environ, tmp_path / "shared")
    text = (tmp_path / "shared" / receiver.OUTCOME_FILE).read_text()
    assert envelope.decode(text)["reason"] == "UnknownMethod"
    assert not (tmp_path / "shared" / receiver.CFG_FILE).exists()


def test_a_large_result_goes_through_the_log_frame(tmp_path: Any) -> None:
    big = envelope.done({"pets": [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]})
    receiver.write_outcome(tmp_path, big, {})
    where = frame.pointer((tmp_path / receiver.OUTCOME_FILE).read_text())
    assert where is not None, "the termination message points at the frame the launcher prints"
    raw = frame.read((tmp_path / receiver.LOG_FILE).read_text(), where, frame.DEFAULT_MAX_RESULT_BYTES)
    assert json.loads(raw) == big


def test_the_component_map_gives_its_pod_template() -> None:
    proxy = {"env": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}]}
    settings = ApiSettings.model_validate(
        {"components": {"petstore": {"image": "p:{revision}", "runtime": "elasticio", "pod_template": proxy}}}
    )
    template = specs.component_template(settings, "petstore")
    assert template == models.RunPodTemplate.model_validate(proxy)
    with pytest.raises(ValidationError, match="securityContext"):
        ApiSettings.model_validate({"components": {"x": {"image": "x", "pod_template": {"securityContext": {}}}}})


@pytest.mark.parametrize(
    ("header", "length"),
    [(None, 0), ("0", 0), ("17", 17), (" 42 ", 42), ("-1", None), ("1e3", None), ("abc", None), ("٣", None)],
)
def test_a_posts_declared_length_is_a_count_of_bytes_or_refused(header: str | None, length: int | None) -> None:
    assert receiver.declared_length(header) == length


def post_to_a_receiver(tmp_path: Any, headers: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    """POST to a real receiver on a free port; the outcome it wrote (decoded)."""
    server = receiver.Receiver(0, tmp_path, {}, {})
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.putrequest("POST", "/")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    assert connection.getresponse().status == 200
    thread.join(10)
    server.server_close()
    return envelope.decode((tmp_path / receiver.OUTCOME_FILE).read_text())


def test_a_post_larger_than_any_result_is_too_large_unread(tmp_path: Any) -> None:
    """The receiver's memory is bounded: a body declared beyond what a run may report is never read."""
    declared = receiver.body_limit({}) + 1
    result = post_to_a_receiver(tmp_path, {"Content-Length": str(declared)})
    assert result["outcome"] == envelope.ERROR and result["reason"] == "ResultTooLarge", result
    assert str(declared) in result["message"]


def test_a_post_without_a_valid_length_is_an_invalid_result(tmp_path: Any) -> None:
    result = post_to_a_receiver(tmp_path, {"Content-Length": "lots"})
    assert result["outcome"] == envelope.ERROR and result["reason"] == "InvalidResult", result
