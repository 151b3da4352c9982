from __future__ import annotations

import pytest

from tests.tools import sample


@pytest.fixture(autouse=True)
def fresh_sample():
    """Each test starts with no calls recorded and slow_write held."""
    sample.called.clear()
    sample.release.clear()
    yield
    sample.release.set()  # a sync tool still running must not hold its thread for long
