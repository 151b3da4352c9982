"""Test settings, on their own: a project that mounts Parley as the example project does
(its URLs, templates and ``example.asgi:application``, which the server subprocesses run), with
a scripted backend and a file test database that server subprocesses can share with the test
process. Tests of the example project's own settings load ``example.settings`` explicitly
(tests/test_checks.py, the ``example_login_settings`` fixture of tests/conftest.py)."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

# Served as `make run` serves: plain http, development behaviour.
DEBUG = True
# One random key per test run, shared with the server subprocesses through the environment
# they inherit: sessions and tickets made by the tests are valid in the servers.
SECRET_KEY = os.environ.setdefault("PARLEY_TEST_SECRET_KEY", secrets.token_urlsafe(50))
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",  # the example project's login throttling, which its URLs and pages assume
    "parley",
    "example",  # the demo seeding (manage.py parley_demo) that test_demo tries
    "tests.apps.TestsConfig",
]

MIDDLEWARE = [
    "parley.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "lockout.html"

ROOT_URLCONF = "example.urls"
ASGI_APPLICATION = "example.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# DATABASE_URL (PostgreSQL in CI) or SQLite; the tests' server subprocesses get the test
# database's name through the environment, and the test process lets pytest-django pick it.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600
    )
}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # As in production: writers queue instead of failing on lock upgrades; readers go on
    # while a writer commits (the servers and the test process share the file).
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
if os.environ.get("PARLEY_TEST_DB_NAME"):
    _db["NAME"] = os.environ["PARLEY_TEST_DB_NAME"]
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"parley-test-{os.getpid()}.sqlite3")
    }

# PARLEY_TEST_DB_TIMEOUT (seconds): how long a server subprocess waits on a database lock
# before the statement fails (SQLite's busy timeout, PostgreSQL's lock_timeout), so that
# fault tests see the failure at once instead of after the production setting's 20 s.
if os.environ.get("PARLEY_TEST_DB_TIMEOUT"):
    _lock_wait = float(os.environ["PARLEY_TEST_DB_TIMEOUT"])
    _db_options = _db.setdefault("OPTIONS", {})
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db_options["timeout"] = _lock_wait
    else:
        _db_options["options"] = f"-c lock_timeout={int(_lock_wait * 1000)}"

# REDIS_URL (with the test's own PARLEY_LAYER_PREFIX, from the redis_env fixture): the pub/sub
# layer, or with PARLEY_TEST_LAYER=core channels-redis' core layer (fault tests); else the
# in-memory layer, queueing a burst rather than dropping any.
_redis = os.environ.get("REDIS_URL", "")
_prefix = os.environ.get("PARLEY_LAYER_PREFIX", "parley")
if _redis and os.environ.get("PARLEY_TEST_LAYER") == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis], "prefix": "parley-core"},
        }
    }
elif _redis:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis], "prefix": _prefix},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10_000},
        }
    }

PARLEY = {
    "BACKENDS": {
        "default": json.loads(
            os.environ.get(
                "PARLEY_TEST_BACKEND",
                '{"BACKEND": "parley.backends.scripted.ScriptedBackend", "OPTIONS": {}}',
            )
        )
    },
    "STREAM_FLUSH_INTERVAL": 0.02,
    # BM25 alone, whose rankings the tests can reason about; tests/knowledge/test_dense.py
    # turns embeddings on (the default) where they are what is tested.
    "KNOWLEDGE": {"EMBEDDINGS": None},
    **json.loads(os.environ.get("PARLEY_TEST_OPTIONS", "{}")),
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "parley:rooms"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "parley": {"handlers": ["console"], "level": os.environ.get("PARLEY_LOG_LEVEL", "INFO")}
    },
}
