"""The committed CRD is exactly what the models generate."""

from __future__ import annotations

from pathlib import Path

import yaml

from schedexec import crd, models

CRD = Path(__file__).resolve().parents[2] / "crds" / crd.CRD_FILE


CHART_COPY = CRD.parents[1] / "charts" / "schedexec" / "files" / crd.CRD_FILE


def test_the_committed_crd_matches_the_models() -> None:
    assert CRD.read_text() == crd.dump(), "crds/ is stale: run `make crds` and commit the result"
    assert CHART_COPY.read_text() == crd.dump(), "the chart's CRD is stale: run `make crds` and commit the result"


def _walk(node: dict, path: str = "") -> list[str]:  # type: ignore[type-arg]
    missing = []
    for name, sub in node.get("properties", {}).items():
        if "description" not in sub:
            missing.append(f"{path}.{name}")
        missing += _walk(sub, f"{path}.{name}")
        if "items" in sub:
            missing += _walk(sub["items"], f"{path}.{name}[]")
    return missing


def test_every_spec_and_status_field_has_a_description_for_kubectl_explain() -> None:
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema["properties"]["spec"], "spec") == []
    assert _walk(schema["properties"]["status"], "status") == []


def test_the_schema_is_structural() -> None:
    text = CRD.read_text()
    for forbidden in ("$ref", "anyOf", "title:", "null"):
        assert forbidden not in text
    assert models.SHORT_NAMES == ["sx"]
