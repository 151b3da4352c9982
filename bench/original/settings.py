"""The original design, as measured in ../shared/README.md: the Channels tutorial's chat
(one group, every socket in it, channels-redis' core layer). A yardstick for bench/fanout.py,
not part of Parley."""

import os

SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
ASGI_APPLICATION = "bench.original.asgi.application"
DATABASES: dict = {}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")],
            "prefix": os.environ.get("BENCH_PREFIX", "bench-original"),
        },
    }
}
USE_TZ = True
