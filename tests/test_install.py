"""Parley as a new user installs it: the wheel in a fresh virtualenv, a fresh
``django-admin startproject`` site with its own base template and styles, wired as
docs/embedding.md says with the sockets under a non-default path, and the widget on its
home page, driven in chromium as a visitor and as a logged-in user."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM, require
from tests.test_browser import text_of

pytestmark = [pytest.mark.browser, pytest.mark.server]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "host-pass-123456"

SETTINGS = """
INSTALLED_APPS += ["channels", "parley"]
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
ASGI_APPLICATION = "mysite.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
TEMPLATES[0]["DIRS"] = [BASE_DIR / "templates"]
PARLEY = {
    "VISITORS": {"ENABLED": True},
    "SOCKET_PREFIX": "/live/",
    # A slow answer, to stop it and to reload in the middle of it.
    "BACKENDS": {"default": {"BACKEND": "parley.backends.scripted.ScriptedBackend",
                             "OPTIONS": {"reply": "Here is **bold** advice. ", "delay": 0.05,
                                         "repeat": 60}}},
}
"""

ASGI = """
import os
from django.core.asgi import get_asgi_application
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_asgi_app = get_asgi_application()
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path
from parley.lifespan import lifespan_application
from parley.routing import websocket_application, websocket_urlpatterns
application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": websocket_application(
        URLRouter([path("live/", URLRouter(websocket_urlpatterns))])
    ),
    "lifespan": lifespan_application,
})
"""

URLS = """
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import TemplateView
urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html")),
    path("plain/", TemplateView.as_view(template_name="home.html", extra_context={"plain": True})),
    path("styled/", TemplateView.as_view(template_name="home.html", extra_context={"css": True})),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="parley/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("assistant/", include("parley.urls")),
]
"""

# The host's own look: a font, colours, a button and a textarea of its own.
BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>My site</title>
{% load static %}<link rel="stylesheet" href="{% static 'site.css' %}">
{% if css %}<link rel="stylesheet" href="{% static 'parley/parley.css' %}">{% endif %}</head>
<body><h1>My site</h1><main>{% block content %}{% endblock %}</main>
<button class="site-button">Buy</button><textarea class="site-text"></textarea>
{% load parley %}
{% if not plain %}{% parley_chat launcher=True %}{% endif %}
</body></html>
"""
SITE_CSS = """body { font: 17px/1.7 Georgia, serif; color: rgb(51, 34, 17); margin: 2rem; }
h1 { color: rgb(139, 0, 0); font-size: 40px; } a { color: rgb(0, 128, 0); }
button { border-radius: 0; background: rgb(255, 255, 0); } textarea { border: 3px solid red; }
"""
HOME = """{% extends "base.html" %}
{% block content %}<p>Welcome. <a href="/x">A link</a></p>{% endblock %}"""

HOST_ELEMENTS = ["body", "h1", "main p", "a", ".site-button", ".site-text"]
PROPERTIES = ["font-family", "font-size", "line-height", "color", "background-color",
              "margin-top", "border-top-width", "border-radius", "box-sizing"]  # fmt: skip


def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def host_site(tmp_path_factory: Any) -> Iterator[str]:
    """The wheel, installed in a new virtualenv; a new project using it, served."""
    tmp = tmp_path_factory.mktemp("install")
    print("\nbuilding the wheel and installing it in a fresh virtualenv…", flush=True)
    # From a copy: a build in the checkout leaves build/, whose stale files the next wheel
    # would carry.
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "parley", source / "parley", ignore=shutil.ignore_patterns("__pycache__")
    )
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", source)
    (wheel,) = (tmp / "dist").glob("parley-*.whl")
    run(sys.executable, "-m", "venv", tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel)
    site = tmp / "site"
    site.mkdir()
    run(tmp / "venv" / "bin" / "django-admin", "startproject", "mysite", site)
    with open(site / "mysite" / "settings.py", "a") as settings:
        settings.write(SETTINGS)
    (site / "mysite" / "asgi.py").write_text(ASGI)
    (site / "mysite" / "urls.py").write_text(URLS)
    (site / "templates").mkdir()
    (site / "templates" / "base.html").write_text(BASE)
    (site / "templates" / "home.html").write_text(HOME)
    (site / "mysite" / "static").mkdir()
    (site / "mysite" / "static" / "site.css").write_text(SITE_CSS)
    with open(site / "mysite" / "settings.py", "a") as settings:
        settings.write('\nSTATICFILES_DIRS = [BASE_DIR / "mysite" / "static"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PARLEY"))}
    run(python, "manage.py", "migrate", "-v0", cwd=site, env=env)
    run(python, "manage.py", "createsuperuser", "--noinput", "--username", "owner",
        "--email", "o@example.com", cwd=site,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD})  # fmt: skip
    port = free_port()
    log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [python, "manage.py", "parley_serve", "--port", str(port)],
        cwd=site, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def styles(page: Any) -> dict[str, dict[str, str]]:
    return page.evaluate(
        """([selectors, properties]) => Object.fromEntries(selectors.map((s) => {
             const style = getComputedStyle(document.querySelector(s));
             return [s, Object.fromEntries(properties.map((p) => [p, style.getPropertyValue(p)]))];
           }))""",
        [HOST_ELEMENTS, PROPERTIES],
    )


def ask_watch_reload_stop(page: Any, url: str, question: str) -> None:
    from playwright.sync_api import expect

    chat = page.locator("parley-chat")
    chat.get_by_role("button", name="Assistant").click()
    expect(chat.locator(".conn")).to_have_attribute("data-state", "connected")
    chat.get_by_role("textbox", name="Message").fill(question)
    chat.get_by_role("textbox", name="Message").press("Enter")
    answer = chat.locator(".msg-assistant").last
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(answer.locator(".msg-body")).to_contain_text("Here is")
    page.reload()
    chat = page.locator("parley-chat")
    chat.get_by_role("button", name="Assistant").click()
    answer = chat.locator(".msg-assistant").last
    expect(answer).to_have_attribute("data-status", "streaming")
    before = text_of(answer.locator(".msg-body"))
    time.sleep(1.0)
    assert len(text_of(answer.locator(".msg-body"))) > len(before), "the answer did not resume"
    chat.get_by_role("button", name="Stop").click()
    expect(answer).to_have_attribute("data-status", "cancelled")
    expect(answer.locator(".msg-body strong").first).to_have_text("bold")
    expect(chat.locator(".msg-user .msg-body").last).to_have_text(question)


def test_the_wheel_in_a_fresh_project_gives_visitors_and_users_the_widget(
    host_site: str, new_tab: Any
) -> None:
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing")
    tab = new_tab()
    page = tab.page
    page.goto(f"{host_site}/plain/")
    without = styles(page)
    page.goto(f"{host_site}/")
    assert styles(page) == without  # the widget changed nothing of the host's look
    page.goto(f"{host_site}/styled/")
    assert styles(page) == without  # nor does parley.css, included in the host's page
    page.goto(f"{host_site}/")
    assert without["h1"]["color"] == "rgb(139, 0, 0)"  # and the host's CSS did load

    ask_watch_reload_stop(page, host_site, "A visitor's question")
    page.goto(f"{host_site}/login/")
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{host_site}/")
    # The visitor's conversation is the user's now; they go on in it.
    ask_watch_reload_stop(page, host_site, "The owner's question")
    assert page.locator("parley-chat .msg-user").count() == 2
    assert tab.dialogs == []
    assert [e for e in tab.errors if "favicon" not in e and "404" not in e] == []
