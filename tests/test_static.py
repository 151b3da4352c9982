"""Parley's static files as a host site includes them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.widget_size import BUDGET, widget_bytes

STATIC = Path(__file__).resolve().parent.parent / "parley" / "static" / "parley"


def selectors(css: str) -> list[str]:
    """Every selector of a stylesheet's style rules (inside @media too; not @keyframes)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"@keyframes[^{]*\{(?:[^{}]*\{[^{}]*\})*\s*\}", "", css)
    found = []
    for prelude in re.findall(r"([^{}]+)\{", css):
        prelude = prelude.strip()
        if not prelude.startswith("@"):
            found += [s.strip() for s in prelude.split(",")]
    return found


@pytest.mark.parametrize(("name", "rules"), [("parley.css", 150), ("answer.css", 60)])
def test_parley_css_styles_only_parleys_own_elements(name: str, rules: int) -> None:
    """No rule reaches the host's elements: each selector starts at the .parley element."""
    found = selectors((STATIC / name).read_text())
    assert len(found) > rules  # the parse saw the whole file
    outside = [s for s in found if not re.match(r"(body)?\.parley([ .:\[]|$)", s)]
    assert outside == []


def test_parley_css_is_themed_by_parley_custom_properties() -> None:
    css = (STATIC / "parley.css").read_text()
    for name in ("accent", "font", "radius", "bg", "text"):
        assert f"--p-{name}: var(--parley-{name}," in css
    assert "@media (prefers-color-scheme: dark)" in css


def test_the_widget_stays_within_its_weight_budget() -> None:
    """bench/widget_size.py: the embedded chat's JS and CSS, gzipped, at most 30 KB."""
    sizes = widget_bytes()
    assert set(sizes) == {
        *("widget.js", "conversation.js", "client.js", "messages.js", "feedback.js"),
        *("widget.css", "answer.css"),
    }
    assert sum(packed for _, packed in sizes.values()) <= BUDGET
