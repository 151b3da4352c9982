"""How long conversations are kept (``PARLEY["RETENTION"]``): docs/operations.md,
"Retention and erasure"."""
