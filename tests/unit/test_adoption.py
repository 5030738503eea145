"""Which Job found under a run's name is adopted (manifests.made_for, kube.Cluster.create_job): only the one this
operator made for that run, as the API server keeps it.

The name of an execution's next run's Job is no secret, and anyone who may create Jobs in the namespace can
write an ownerReference to the execution into one: such a planted Job, adopted, would make its pod's outcome
the execution's result. `created` builds a Job as the API server answers it once created from a manifest
(Kubernetes' defaulting of batch/v1 Jobs and pod templates, the Job controller's selector and labels);
tests/cluster/test_planted_job.py checks the same against a real API server.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedexec import manifests, models
from tests.unit.builders import POD_DEFAULTS

QUANTITIES = [("100m", "100m"), ("1000m", "1"), ("0.5", "500m"), ("64Mi", "64Mi"), ("1Gi", "1Gi"), ("2e3", "2k")]
"""(as written in spec.component.resources, as the API server writes it back)."""


def execution(
    uid: str = "0d4c8f56-0000-4000-8000-000000000001",
    image: str = "ghcr.io/acme/shop:1.2",
    command: list[str] | None = None,
    resources: dict[str, Any] | None = None,
    credentials: str | None = None,
    pull_secrets: list[str] | None = None,
    name: str = "nightly",
) -> models.ScheduledExecution:
    component: dict[str, Any] = {"image": image}
    if command:
        component["command"] = command
    if resources:
        component["resources"] = resources
    if pull_secrets:
        component["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    spec: dict[str, Any] = {"component": component, "method": "sync", "args": {"page": 1}}
    if credentials:
        spec["credentialsSecretRef"] = {"name": credentials}
    return models.ScheduledExecution.model_validate(
        {"metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "3"}, "spec": spec}
    )


def created(manifest: dict[str, Any], canonical: dict[str, str] | None = None) -> dict[str, Any]:
    """`manifest` as the API server answers a GET of it once created (and its pod started): defaults filled
    in, the selector and the Job controller's labels, server fields, a status. `canonical`: how it rewrites
    quantities (written → kept)."""
    job = copy.deepcopy(manifest)
    uid, name = str(uuid.uuid4()), manifest["metadata"]["name"]
    controller = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    job["metadata"].update(
        uid=uid,
        resourceVersion="1234",
        generation=1,
        creationTimestamp="2026-12-07T05:00:00Z",
        managedFields=[{"manager": "schedexec", "operation": "Update", "apiVersion": "batch/v1"}],
    )
    spec = job["spec"]
    spec.update(parallelism=1, completions=1, completionMode="NonIndexed", suspend=False)
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template = spec["template"]
    template["metadata"]["creationTimestamp"] = None
    template["metadata"]["labels"].update(controller)
    pod = template["spec"]
    pod.update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler", terminationGracePeriodSeconds=30)
    for container in pod["containers"]:
        container["terminationMessagePath"] = "/dev/termination-log"
        container["imagePullPolicy"] = manifests.image_pull_policy(container["image"])
        resources = container.setdefault("resources", {})
        for kind in resources.values():
            for resource, value in kind.items():
                kind[resource] = (canonical or {}).get(value, value)
    for volume in pod["volumes"]:
        if "secret" in volume:
            volume["secret"]["defaultMode"] = 420
        if "downwardAPI" in volume:
            volume["downwardAPI"]["defaultMode"] = 420
            for item in volume["downwardAPI"]["items"]:
                item["fieldRef"]["apiVersion"] = "v1"
    job["status"] = {"active": 1, "ready": 0, "startTime": "2026-12-07T05:00:01Z", "uncountedTerminatedPods": {}}
    return job


def manifest_of(execution: models.ScheduledExecution, index: int = 1, name: str | None = None) -> dict[str, Any]:
    return manifests.job_manifest(execution, index, {"page": index}, POD_DEFAULTS, name=name)


IMAGES = st.sampled_from(["ghcr.io/acme/shop:1.2", "shop", "shop:latest", "reg:5000/shop", "shop@sha256:" + "a" * 64])
NAMES = st.from_regex(r"[a-z]([a-z0-9-]{0,60}[a-z0-9])?", fullmatch=True)


@st.composite
def executions(draw: st.DrawFn) -> tuple[models.ScheduledExecution, dict[str, str]]:
    """Any execution the operator may run, and how the API server rewrites its quantities."""
    picked = draw(st.lists(st.sampled_from(QUANTITIES), max_size=3, unique=True))
    canonical = dict(picked)
    resources = None
    if picked:
        resources = {}
        for i, (written, _) in enumerate(picked):
            resources.setdefault(("requests", "limits")[i % 2], {})[f"r{i}"] = written
    made = execution(
        uid=str(draw(st.uuids())),
        name=draw(NAMES),
        image=draw(IMAGES),
        command=draw(st.none() | st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3)),
        resources=resources,
        credentials=draw(st.none() | st.just("creds")),
        pull_secrets=draw(st.none() | st.lists(st.sampled_from(["reg", "reg2"]), min_size=1, max_size=2)),
    )
    return made, canonical


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, scalar) of `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def objects(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every object (mapping) in `value`."""
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from objects(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from objects(item, (*path, index))


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def other_than(value: Any) -> st.SearchStrategy[Any]:
    """Values of another type or content than `value`."""
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int):
        return st.integers().filter(lambda v: v != value) | st.just(str(value))
    return st.text(max_size=20).filter(lambda v: v != value) | st.just(1)


def test_the_operators_own_job_as_the_api_server_keeps_it_is_adopted() -> None:
    made = manifest_of(execution(credentials="creds", pull_secrets=["reg"]))
    assert manifests.made_for(created(made), made) is None


@given(executions(), st.integers(1, 10_000))
def test_any_run_job_the_operator_made_is_adopted_whatever_the_api_server_defaulted(
    drawn: tuple[models.ScheduledExecution, dict[str, str]], index: int
) -> None:
    made_execution, canonical = drawn
    made = manifest_of(made_execution, index)
    assert manifests.made_for(created(made, canonical), made) is None


@given(executions(), st.data())
def test_a_job_with_any_field_the_operator_sets_changed_is_refused_and_named(
    drawn: tuple[models.ScheduledExecution, dict[str, str]], data: st.DataObject
) -> None:
    """A planted Job under the run's name, with the owner reference copied and anything else of its maker's
    choosing (the image, the command, the args annotation, an env value, a volume's Secret, the security
    context, a label): never adopted."""
    made_execution, canonical = drawn
    made = manifest_of(made_execution)
    planted = created(made, canonical)
    path, value = data.draw(st.sampled_from(sorted(leaves(made), key=repr)), label="field")
    if path[-2:-1] in (("requests",), ("limits",)):
        new = data.draw(st.sampled_from(["3", "7Mi", "250m"]).filter(lambda v: v != canonical.get(value, value)))
    else:
        new = data.draw(other_than(value), label="planted value")
    at(planted, path[:-1])[path[-1]] = new
    found = manifests.made_for(planted, made)
    assert found is not None
    assert str(path[-1]) in found, found


@given(executions(), st.data())
def test_a_job_with_any_field_the_operator_sets_removed_is_refused(
    drawn: tuple[models.ScheduledExecution, dict[str, str]], data: st.DataObject
) -> None:
    made_execution, canonical = drawn
    made = manifest_of(made_execution)
    planted = created(made, canonical)
    path, _ = data.draw(st.sampled_from(sorted(leaves(made), key=repr)), label="field")
    container = at(planted, path[:-1])
    if isinstance(container, list):
        del container[path[-1]]
    else:
        del container[path[-1]]
    assert manifests.made_for(planted, made) is not None


DANGEROUS = [
    (("spec", "template", "spec"), "initContainers", [{"name": "x", "image": "evil"}]),
    (("spec", "template", "spec"), "serviceAccountName", "admin"),
    (("spec", "template", "spec"), "hostAliases", [{"ip": "10.0.0.66", "hostnames": ["api.acme.com"]}]),
    (("spec", "template", "spec"), "dnsConfig", {"nameservers": ["10.0.0.66"]}),
    (("spec", "template", "spec"), "nodeName", "node-1"),
    (("spec", "template", "spec"), "shareProcessNamespace", True),
    (("spec", "template", "spec", "containers", 0), "args", ["--forge"]),
    (("spec", "template", "spec", "containers", 0), "envFrom", [{"secretRef": {"name": "s"}}]),
    (("spec", "template", "spec", "containers", 0), "workingDir", "/evil"),
    (("spec",), "managedBy", "evil.example.com/jobs"),
    (("spec",), "manualSelector", True),
    (("metadata",), "finalizers", ["evil.example.com/hold"]),
    (("metadata",), "annotations", {"note": "mine"}),
]
DEFAULTS_CHANGED = [
    (("spec", "template", "spec"), "dnsPolicy", "None"),
    (("spec", "template", "spec"), "terminationGracePeriodSeconds", 1),
    (("spec", "template", "spec", "containers", 0), "terminationMessagePath", "/tmp/forged"),
    (("spec", "template", "spec", "containers", 0), "imagePullPolicy", "Never"),
    (("spec", "template", "spec", "volumes", 1, "downwardAPI"), "defaultMode", 0o777),
    (("spec",), "parallelism", 2),
    (("spec",), "suspend", True),
    (("spec", "selector", "matchLabels"), "batch.kubernetes.io/controller-uid", "another-job"),
    (("spec", "template", "metadata", "labels"), "job-name", "another-job"),
]


@pytest.mark.parametrize(("where", "key", "value"), DANGEROUS + DEFAULTS_CHANGED)
def test_a_job_with_a_field_added_or_a_default_changed_is_refused(where: tuple[Any, ...], key: str, value: Any) -> None:
    made = manifest_of(execution())
    planted = created(made)
    at(planted, where)[key] = value
    found = manifests.made_for(planted, made)
    assert found is not None and key in found, found


@given(st.data())
def test_a_job_with_any_unknown_field_anywhere_is_refused(data: st.DataObject) -> None:
    made = manifest_of(execution(credentials="creds"))
    planted = created(made)
    server = (("status",), ("metadata", "managedFields"))  # the API server's and the controllers' to write
    where = data.draw(
        st.sampled_from([p for p in sorted(objects(planted), key=repr) if not any(p[: len(s)] == s for s in server)])
    )
    key = data.draw(st.from_regex(r"x[A-Za-z]{0,12}", fullmatch=True), label="key")
    at(planted, where)[key] = data.draw(st.none() | st.booleans() | st.text(max_size=5) | st.just({}), label="value")
    found = manifests.made_for(planted, made)
    assert found is not None and key in found, found


def test_the_message_names_the_field_not_its_value() -> None:
    made = manifest_of(execution())
    planted = created(made)
    planted["spec"]["template"]["metadata"]["annotations"][manifests.ARGS_ANNOTATION] = '{"forged":"s3cr3t"}'
    found = manifests.made_for(planted, made)
    assert found == f"spec.template.metadata.annotations['{manifests.ARGS_ANNOTATION}'] differs"
    planted = created(made)
    planted["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/forger:1"
    assert manifests.made_for(planted, made) == "spec.template.spec.containers[0].image differs"


def test_a_job_of_another_run_of_the_same_execution_is_refused() -> None:
    """Run 2's Job (made by the operator) under run 3's name: it holds run 2's args and index."""
    made = execution()
    run_three = manifest_of(made, 3)
    moved = created(manifest_of(made, 2, name=run_three["metadata"]["name"]))
    assert manifests.made_for(moved, run_three) is not None


def test_a_job_made_before_the_upgrade_under_the_legacy_name_is_adopted_and_a_planted_one_is_not() -> None:
    """The operator before the uid tag made the same Job under `<name>-r<i>` (only the name differs): a run in
    progress across the upgrade is adopted under that name (manifests.run_job); a planted one is not."""
    made = execution()
    legacy = manifests.legacy_job_name("nightly", 2)
    expected = manifest_of(made, 2, name=manifests.run_job("nightly", made.metadata.uid, 2, {legacy}))
    assert expected["metadata"]["name"] == legacy
    assert manifests.made_for(created(expected), expected) is None
    planted = created(expected)
    planted["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "echo forged"]
    assert (
        manifests.made_for(planted, expected)
        == "spec.template.spec.containers[0].command is set, and schedexec does not set it"
    )


def test_a_job_being_deleted_by_the_garbage_collector_is_still_the_same_job() -> None:
    made = manifest_of(execution())
    job = created(made)
    job["metadata"].update(deletionTimestamp="2026-12-07T05:01:00Z", deletionGracePeriodSeconds=0)
    job["metadata"]["finalizers"] = ["foregroundDeletion"]
    assert manifests.made_for(job, made) is None


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("shop", "Always"),
        ("shop:latest", "Always"),
        ("reg:5000/shop", "Always"),
        ("reg:5000/shop:1", "IfNotPresent"),
        ("shop:1.2", "IfNotPresent"),
        ("shop@sha256:" + "a" * 64, "IfNotPresent"),
        ("shop:latest@sha256:" + "a" * 64, "Always"),  # ParseImageName keeps a tag beside a digest
        ("shop:1@sha256:" + "a" * 64, "IfNotPresent"),
        ("reg:5000/shop@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_the_default_image_pull_policy_is_kubernetes(image: str, policy: str) -> None:
    assert manifests.image_pull_policy(image) == policy


@pytest.mark.parametrize(
    ("kept", "asked"), [("1m", "100u"), ("1m", "0.0001"), ("500m", "0.5"), ("2", "2"), ("1Ki", "1024")]
)
def test_a_quantity_is_compared_as_the_api_server_keeps_it_rounded_up_to_milli(kept: str, asked: str) -> None:
    assert manifests.same_quantity(kept, asked)
    assert not manifests.same_quantity("2m", asked)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", 1), ("1000m", 1), ("0.5", Decimal("0.5")), ("1Ki", 1024), ("2e3", 2000), ("64Mi", 64 * 2**20), (".5k", 500)],
)
def test_quantities_are_compared_by_value(text: str, value: Decimal) -> None:
    assert manifests.quantity_value(text) == value
    assert manifests.quantity_value("12 cores") is None
