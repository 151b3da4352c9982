"""The live side: room sockets, their routing and admission, the per-process hub that fans
frames out, write queues, rate limits, live-socket rights, the ASGI lifespan and the hop to
the database thread."""
