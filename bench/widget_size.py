"""The embedded chat's weight: what a page that shows <parley-chat> downloads, gzipped.

    .venv/bin/python bench/widget_size.py

Counts the module, the modules it imports and its stylesheets (parley/static/parley/), each
compressed alone as a server would send it. Budget: 30 KB (issue 12).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "parley" / "static" / "parley"
BUDGET = 30 * 1024
ENTRY = "widget.js"
STYLESHEET = "widget.css"


def widget_files() -> list[Path]:
    """widget.js and every module it imports, widget.css and every stylesheet it imports
    (relative imports, followed)."""
    found: list[Path] = []
    todo = [STATIC / STYLESHEET, STATIC / ENTRY]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.append(path)
        text = path.read_text()
        imports = re.findall(r"""^import .*? from "\./([\w.-]+)";""", text, re.M)
        imports += re.findall(r"""^@import url\("([\w.-]+)"\);""", text, re.M)
        todo += [STATIC / name for name in imports]
    return found


def widget_bytes() -> dict[str, tuple[int, int]]:
    """Each file's (raw, gzipped) size in bytes."""
    return {
        path.name: (len(data), len(gzip.compress(data, compresslevel=9)))
        for path in widget_files()
        for data in [path.read_bytes()]
    }


def main() -> None:
    sizes = widget_bytes()
    for name, (raw, packed) in sizes.items():
        print(f"{name:14} {raw:7,} B  {packed:6,} B gzipped")
    total = sum(packed for _, packed in sizes.values())
    print(f"{'total':14} {sum(r for r, _ in sizes.values()):7,} B  {total:6,} B gzipped "
          f"({total / 1024:.1f} KB of the {BUDGET // 1024} KB budget)")  # fmt: skip


if __name__ == "__main__":
    main()
