"""Parley's settings: each default written once, merged as documented."""

from __future__ import annotations

from dataclasses import fields

import pytest
from django.core.exceptions import ImproperlyConfigured

from parley.conf import DEFAULTS, ParleyConfig, get_config


def test_every_default_is_a_field_of_the_config_and_every_field_a_default():
    config = ParleyConfig()
    assert set(DEFAULTS) == {spec.name.upper() for spec in fields(ParleyConfig)}
    for key, default in DEFAULTS.items():
        assert getattr(config, key.lower()) == default, key


def test_an_empty_parley_setting_gives_the_defaults(settings):
    settings.PARLEY = {}
    assert get_config() == ParleyConfig()


def test_nested_settings_merge_over_their_defaults_and_leave_them_alone(settings):
    settings.PARLEY = {"RATE_LIMITS": {"USER": None}}
    assert get_config().rate_limits == {**DEFAULTS["RATE_LIMITS"], "USER": None}
    assert DEFAULTS["RATE_LIMITS"]["USER"] == (5, 20)


def test_unknown_keys_are_refused(settings):
    settings.PARLEY = {"KNOWLEDGE": {"TOPK": 1}}
    with pytest.raises(ImproperlyConfigured, match="TOPK"):
        get_config()
