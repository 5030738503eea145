"""The operator's settings carry every decision policy knob under the same name (cli.py builds Policy by name)."""

from __future__ import annotations

import dataclasses

from schedexec import decisions, manifests
from schedexec.settings import OperatorSettings


def test_every_policy_field_is_a_setting_with_the_same_default() -> None:
    settings = OperatorSettings()
    for field in dataclasses.fields(decisions.Policy):
        assert field.name in OperatorSettings.model_fields, field.name
        assert getattr(settings, field.name) == field.default, field.name


def test_the_pod_defaults_match_the_settings_defaults() -> None:
    settings = OperatorSettings()
    for field in dataclasses.fields(manifests.PodDefaults):
        assert getattr(settings, field.name) == field.default, field.name
