"""Command bodies of the ``vlmq`` CLI that are more than a thin wrapper."""
