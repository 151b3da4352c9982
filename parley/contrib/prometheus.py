"""prometheus-client's multiprocess mode, as Parley uses it (parley/metrics).

Each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``, named by its pid;
a scrape adds them up. A process that exits cleanly or is killed leaves its live gauges'
files behind (``gauge_livesum_<pid>.db``): prometheus-client expects the supervisor to call
``mark_process_dead``, which uvicorn's does not. So each scrape drops the files of pids that
no longer run, found by those file names: the part of this that leans on the library's
layout.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import REGISTRY

_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def exposition() -> bytes:
    """The text a scrape is answered with: every live process's figures, summed, in
    multiprocess mode; this process's own otherwise."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return generate_latest(REGISTRY)
    for pid in _dead_pids(Path(path)):
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def _dead_pids(path: Path) -> set[int]:
    pids = {
        int(m.group(1)) for f in path.glob("gauge_live*.db") if (m := _LIVE_FILE.fullmatch(f.name))
    }
    return {pid for pid in pids if not _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it runs
        return True
    return True
