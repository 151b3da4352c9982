"""Which tools a backend alias offers, and the checks that say when that cannot work."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from parley.checks import check_backends
from parley.tools import tool
from parley.tools.registry import tools_for
from tests.tools import sample

OPENAI = "parley.backends.openai.OpenAIBackend"
OFFLINE = "parley.backends.offline.OfflineBackend"


@tool(name="order_status")
def impostor() -> str:
    """Another tool of the same name."""
    return ""


def with_tools(settings, *paths: str, backend: str = OPENAI) -> None:
    settings.PARLEY = {"BACKENDS": {"default": {"BACKEND": backend, "TOOLS": list(paths)}}}


def test_an_alias_offers_its_tools_in_the_order_listed(settings):
    with_tools(settings, "tests.tools.sample.wait", "tests.tools.sample.order_status")
    assert tools_for("default") == (sample.wait, sample.order_status)
    assert check_backends() == []


def test_an_alias_without_tools_offers_none(settings):
    settings.PARLEY = {"BACKENDS": {"default": {"BACKEND": OPENAI}}}
    assert tools_for("default") == ()
    assert tools_for("no-such-alias") == ()


def test_settings_changed_are_read_anew(settings):
    with_tools(settings, "tests.tools.sample.wait")
    assert tools_for("default") == (sample.wait,)
    with_tools(settings, "tests.tools.sample.broken")
    assert tools_for("default") == (sample.broken,)


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tests.tools.sample.nothing", "could not be imported"),
        ("tests.tools.sample.called", "is no tool; decorate the function with @parley.tools.tool"),
        ("tests.tools.test_registry.impostor", "two tools are named 'order_status'"),
    ],
)
def test_tools_that_cannot_be_offered_are_error_e006_naming_the_alias(settings, path, says):
    with_tools(settings, "tests.tools.sample.order_status", path)
    with pytest.raises(ImproperlyConfigured, match="TOOLS"):
        tools_for("default")
    (error,) = check_backends()
    assert error.id == "parley.E006"
    assert "PARLEY['BACKENDS']['default']['TOOLS']" in error.msg and says in error.msg


def test_tools_given_to_a_backend_that_cannot_call_them_are_warning_w005(settings):
    with_tools(settings, "tests.tools.sample.wait", backend=OFFLINE)
    (warning,) = check_backends()
    assert warning.id == "parley.W005"
    assert "OfflineBackend does not call tools" in warning.msg
