"""How long conversations are kept (``PARLEY["RETENTION"]``) and what deleting a user does to
theirs (``PARLEY["ERASURE"]``): docs/operations.md, "Retention and erasure"."""
