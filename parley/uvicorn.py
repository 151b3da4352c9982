"""The public path of Parley's uvicorn protocols (``--ws parley.uvicorn:WebSocketProtocol``):
see :mod:`parley.contrib.uvicorn`."""

from __future__ import annotations

from .contrib.uvicorn import HttpToolsProtocol, WebSocketProtocol

__all__ = ["HttpToolsProtocol", "WebSocketProtocol"]
