"""Parley: real-time chat with a streaming AI assistant for Django sites."""

__version__ = "0.1.0"
