def info():
    """Summarise shards."""


def preview():
    """Contact sheet."""
