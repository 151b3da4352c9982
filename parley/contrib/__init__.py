"""Every use of another library's private internals, in one place: what to re-check when
uvicorn, asgiref, asyncio or Django changes (one module per library)."""
