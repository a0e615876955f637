"""Exceptions raised by focalcodec for problems the user can fix.

Every message names what was wrong (file, argument or value) and what to do about it, so the
CLI can print it as a single line instead of a traceback.
"""


class FocalCodecError(Exception):
    """Base class of all user-facing focalcodec errors."""


class ConfigError(FocalCodecError, ValueError):
    """A model configuration is invalid (unknown component, bad key or value)."""


class CheckpointError(FocalCodecError):
    """Weights are missing, unreadable, or do not fit the configuration."""


class InputError(FocalCodecError, ValueError):
    """An argument of an API call is unusable (wrong shape, dtype or range)."""


class AudioError(InputError):
    """Input audio is unusable (wrong shape or dtype, empty, too short, NaN/Inf, unreadable)."""


class FormatError(FocalCodecError, ValueError):
    """A compressed container is truncated, corrupted or was made by another model."""


class StreamingError(FocalCodecError, RuntimeError):
    """A streaming session was misused (non-causal model, call after flush, ...)."""
