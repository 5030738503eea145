"""The XSOAR YAML tool: an integration's own .yml (demisto/content, copied byte for byte under
tests/thirdparty/demisto-content, see PROVENANCE.md) becomes one ScheduledExecution per polling command,
each valid for the operator's model (what `kubectl apply` checks)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from schedexec import models
from schedexec_runner import xsoar_yaml

THIRDPARTY = Path(__file__).resolve().parents[1] / "thirdparty" / "demisto-content"
CAPE = THIRDPARTY / "CapeSandbox" / "CapeSandbox.yml"
ARCANNA = THIRDPARTY / "ArcannaAI" / "ArcannaAI.yml"


def printed(*argv: str) -> tuple[int, list[dict[str, Any]], str]:
    out = io.StringIO()
    code = xsoar_yaml.main(list(argv), out)
    return code, [doc for doc in yaml.safe_load_all(out.getvalue()) if doc], out.getvalue()


def test_cape_gives_its_two_submit_commands_not_the_internal_poll() -> None:
    code, docs, text = printed(
        str(CAPE), "--image", "registry.example/cape:1", "--credentials-secret", "cape", "--params-configmap", "cape-p"
    )
    assert code == 0
    assert [d["spec"]["method"] for d in docs] == ["cape-file-submit", "cape-url-submit"]
    url = docs[1]
    assert url["metadata"]["name"] == "capesandbox-cape-url-submit"
    assert url["spec"]["args"] == {"polling": "true"}  # the YAML's defaultValue, as XSOAR fills it in
    assert url["spec"]["credentialsSecretRef"] == {"name": "cape"}
    assert url["spec"]["podTemplate"] == {"envFrom": [{"prefix": "XSOAR_PARAM_", "configMapRef": {"name": "cape-p"}}]}
    assert "# required args to fill in: url\n" in text and "# required args to fill in: entry_id\n" in text
    for doc in docs:
        models.ScheduledExecution.model_validate(doc)


def test_arcanna_gives_its_polling_command() -> None:
    code, docs, _ = printed(str(ARCANNA), "--image", "i:1", "--timeout-seconds", "900")
    assert code == 0
    assert [(d["metadata"]["name"], d["spec"]["method"]) for d in docs] == [
        ("arcanna-ai-arcanna-get-event-status", "arcanna-get-event-status")
    ]
    assert docs[0]["spec"]["timeoutSeconds"] == 900 and docs[0]["spec"]["args"] == {}
    models.ScheduledExecution.model_validate(docs[0])


def test_a_file_without_polling_commands_or_commands_says_so(tmp_path: Path) -> None:
    no_polling = tmp_path / "a.yml"
    no_polling.write_text("commonfields: {id: A}\nscript:\n  commands:\n  - name: a-b\n", encoding="utf-8")
    assert printed(str(no_polling), "--image", "i")[0] == 1
    not_integration = tmp_path / "b.yml"
    not_integration.write_text("- just a list\n", encoding="utf-8")
    assert printed(str(not_integration), "--image", "i")[0] == 2


@given(ident=st.text(min_size=1, max_size=80), command=st.from_regex(r"[a-z][a-z0-9-]{0,80}", fullmatch=True))
def test_execution_names_are_dns_labels(ident: str, command: str) -> None:
    name = xsoar_yaml.execution_name({"commonfields": {"id": ident}}, command)
    assert 0 < len(name) <= xsoar_yaml.NAME_LIMIT
    assert name[0].isalnum() and name[-1].isalnum()
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


@pytest.mark.parametrize("internal", [True, False])
def test_internal_polling_commands_are_left_out(internal: bool) -> None:
    integration = {"script": {"commands": [{"name": "c", "polling": True, "internal": internal}]}}
    assert [c["name"] for c in xsoar_yaml.polling_commands(integration)] == ([] if internal else ["c"])
