"""Runs the front end's pure-JS tests (tests/js/*.test.mjs) with ``node --test``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent


def test_client_js_with_node() -> None:
    node = shutil.which("node")
    require(node is not None, "node is not installed: the JS tests need `node --test` (Node 20+)")
    result = subprocess.run(
        [node, "--test", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
