"""``{% load parley %}{% parley_chat %}``: the embedded chat on a page of the site."""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.simple_tag
def parley_chat(*, launcher: bool = False, heading: str = "") -> str:
    """The ``<parley-chat>`` element and its module script: in the page where the tag is,
    or, with ``launcher=True`` (put it in the base template for every page), as a button
    in the corner that opens it. Use it as often as the page needs: the module loads once."""
    return format_html(
        '<script type="module" src="{}"></script><parley-chat endpoint="{}"{}{}></parley-chat>',
        static("parley/widget.js"),
        reverse("parley:chat-session"),
        format_html(' heading="{}"', heading) if heading else "",
        mark_safe(" launcher") if launcher else "",  # noqa: S308 - a constant
    )
