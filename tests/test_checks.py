from __future__ import annotations

from parley.checks import check_backends, check_channel_layer


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_configured_example_passes(settings):
    settings.DEBUG = True  # pytest-django runs tests with DEBUG=False
    assert check_backends() == [] and check_channel_layer() == []


def test_unimportable_backend_and_missing_default(settings):
    settings.PARLEY = {"BACKENDS": {"chat": {"BACKEND": "nowhere.Backend"}}}
    assert ids(check_backends()) == ["parley.E001", "parley.E001"]


def test_unknown_setting_is_named(settings):
    settings.PARLEY = {"STREAM_FLUSH": 1}
    (error,) = check_backends()
    assert error.id == "parley.E002" and "STREAM_FLUSH" in error.msg


def test_unknown_knowledge_setting_is_named_and_the_others_keep_their_defaults(settings):
    from parley.conf import get_config

    settings.PARLEY = {"KNOWLEDGE": {"TOP_K": 2}}
    assert get_config().knowledge == {"FOLDERS": [], "TOP_K": 2, "MIN_SCORE": 0.5}
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
