"""`make release`'s pure pieces: what is released under which reference, its labels, the chart's values."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schedexec_devcluster import images, release
from tests.support import REPO

VALUES = (REPO / "charts" / "schedexec" / "values.yaml").read_text()
REPOSITORY = st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{2,5})?(/[a-z0-9_-]{1,10}){1,3}/operator", fullmatch=True)


def test_the_runner_operator_and_examples_are_released_not_the_test_component() -> None:
    released = release.released_images()
    assert set(released) == {"runner", "operator", "example-shop", "example-sandbox", "example-ratelimited"}
    built = {spec.name for spec in images.IMAGES}
    assert set(released.values()) <= built
    assert not any("test-component" in name for name in released.values())


def test_references_and_labels_come_from_registry_and_version() -> None:
    assert release.release_reference("ghcr.io/acme/", "runner", "1.2.3") == "ghcr.io/acme/runner:1.2.3"
    labels = release.oci_labels("https://github.com/schedexec/schedexec", "abc123", "1.2.3")
    assert labels == {
        "org.opencontainers.image.source": "https://github.com/schedexec/schedexec",
        "org.opencontainers.image.revision": "abc123",
        "org.opencontainers.image.version": "1.2.3",
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    assert release.registry_host("10.244.0.1:5000/schedexec/release") == "10.244.0.1:5000"


@settings(deadline=None, max_examples=30)  # parses the whole values.yaml twice per example
@given(REPOSITORY)
def test_the_released_chart_names_the_released_operator_and_changes_nothing_else(repository: str) -> None:
    rewritten = release.with_image_repository(VALUES, repository)
    before, after = yaml.safe_load(VALUES), yaml.safe_load(rewritten)
    assert after["image"]["repository"] == repository
    after["image"]["repository"] = before["image"]["repository"]
    assert after == before
    changed = [pair for pair in zip(VALUES.splitlines(), rewritten.splitlines(), strict=True) if pair[0] != pair[1]]
    assert len(changed) == 1, "comments and every other line kept"


@settings(max_examples=25)
@given(
    registry=st.from_regex(r"\A[a-z0-9]{1,10}(\.[a-z]{2,5})?(:[0-9]{2,5})?(/[a-z0-9]{1,8}){0,2}\Z"),
    version=st.from_regex(r"\A[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}(-rc\.[0-9])?\Z"),
)
def test_the_released_chart_shows_artifact_hub_the_released_images(registry: str, version: str) -> None:
    text = (REPO / "charts" / "schedexec" / "Chart.yaml").read_text()
    released = release.with_artifact_hub_images(text, registry, version)
    before, after = yaml.safe_load(text), yaml.safe_load(released)
    images = yaml.safe_load(after["annotations"]["artifacthub.io/images"])
    names = [image["name"] for image in yaml.safe_load(before["annotations"]["artifacthub.io/images"])]
    assert images == [{"name": name, "image": f"{registry}/{name}:{version}"} for name in names]
    after["annotations"]["artifacthub.io/images"] = before["annotations"]["artifacthub.io/images"]
    assert after == before, "nothing but the images changes"
