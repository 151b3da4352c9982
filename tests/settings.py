"""Test settings: the example project's, with a scripted backend and a file test database
that server subprocesses can share with the test process."""

from __future__ import annotations

import json
import os
import tempfile

# The example project runs with DEBUG off unless told otherwise; the tests' server
# subprocesses (which inherit this environment) serve plain http as `make run` does, and
# sign with the checkout's development key (example.settings.development_secret_key).
os.environ.setdefault("DEBUG", "true")

from example.settings import *  # noqa: E402, F403
from example.settings import DATABASES, INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.apps.TestsConfig"]

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WHITENOISE_AUTOREFRESH = True

# Server subprocesses started by the tests get the test database's name through the
# environment; the test process itself lets pytest-django pick it.
if os.environ.get("PARLEY_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["PARLEY_TEST_DB_NAME"]
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"parley-test-{os.getpid()}.sqlite3")
    }

# PARLEY_TEST_DB_TIMEOUT (seconds): how long a server subprocess waits on a database lock
# before the statement fails (SQLite's busy timeout, PostgreSQL's lock_timeout), so that
# fault tests see the failure at once instead of after the production setting's 20 s.
if os.environ.get("PARLEY_TEST_DB_TIMEOUT"):
    _lock_wait = float(os.environ["PARLEY_TEST_DB_TIMEOUT"])
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        _db_options["timeout"] = _lock_wait
    else:
        _db_options["options"] = f"-c lock_timeout={int(_lock_wait * 1000)}"

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
    **json.loads(os.environ.get("PARLEY_TEST_OPTIONS", "{}")),
}

# PARLEY_TEST_LAYER=core: channels-redis' core layer instead of the pub/sub one (fault tests).
if os.environ.get("PARLEY_TEST_LAYER") == "core" and os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {  # noqa: F405
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]], "prefix": "parley-core"},
        }
    }
