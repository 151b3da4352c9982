"""The knowledge the assistant answers from: files in configured folders and objects of
registered models, cut into passages, indexed (BM25), searched with the asker's read
rights. docs/knowledge.md explains it; :func:`register` is the API for models."""

from __future__ import annotations

from .registry import Registration, register, registrations, unregister

__all__ = ["Registration", "register", "registrations", "unregister"]
