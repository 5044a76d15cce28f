"""Exceptions that carry a message meant for the person running ffmask."""


class FFMaskError(Exception):
    """A problem with the user's input or environment; the CLI prints it as one line."""


class VideoError(FFMaskError):
    """A video cannot be opened or decoded (missing, empty, truncated, corrupt)."""


class CheckpointError(FFMaskError):
    """A model checkpoint is untrusted, unreadable or does not match its config."""
