"""The public path of Parley's ASGI lifespan: see :mod:`parley.realtime.lifespan`."""

from __future__ import annotations

from .realtime.lifespan import lifespan_application

__all__ = ["lifespan_application"]
