"""Test settings: the example project's, with a scripted backend and a file test database
that server subprocesses can share with the test process."""

from __future__ import annotations

import json
import os
import tempfile

from example.settings import *  # noqa: F403
from example.settings import DATABASES

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
