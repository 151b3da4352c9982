"""Where Parley leans on the internals of Django's management commands: the stream an
``OutputWrapper`` wraps, which a progress bar must write to."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from tqdm import tqdm


def progress_bar(
    command: BaseCommand, *, total: int, desc: str, unit: str, disabled: bool
) -> tqdm[Any]:
    """A progress bar on ``command``'s stderr: off if ``disabled``, else drawn only when
    stderr is a terminal."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        # The wrapped stream: OutputWrapper.write ends every write with a newline.
        file=getattr(command.stderr, "_out", command.stderr),
        disable=True if disabled else None,
        leave=True,
    )
