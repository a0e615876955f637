"""Every exception (and warning) that focalcodec raises for a problem the user can fix.

Each message names what was wrong (file, argument or value) and what to do about it, so
the command line can print it as a single line instead of a traceback. The classes live
here, in one place, so that callers can catch them without importing the module that
raises them::

    FocalCodecError
    ├── ConfigError            a model configuration is invalid
    ├── CheckpointError        weights are missing, unreadable or do not fit
    ├── LoadError              a model cannot be loaded for inference
    ├── InputError             an API argument is unusable
    │   ├── AudioError         audio is unusable
    │   └── DataError          an audio folder or manifest is unusable
    ├── FormatError            a .fcz container or token folder is bad
    │   ├── TruncatedError     ... cut short
    │   ├── ChecksumError      ... corrupted
    │   └── ModelMismatchError ... made by another model
    ├── StreamingError         a streaming session was misused
    ├── OutputExistsError      an output exists (no --force) or is an input
    ├── OutputError            an output cannot be written (disk full, permissions)
    ├── UsageError             command-line arguments that cannot work (exit status 2)
    ├── OnnxRuntimeMissingError
    ├── EvalError              an evaluation cannot run as asked
    └── MetricUnavailable      a metric's package or model is missing
"""


class FocalCodecError(Exception):
    """Base class of all user-facing focalcodec errors."""


class ConfigError(FocalCodecError, ValueError):
    """A model configuration is invalid (unknown component, bad key or value)."""


class CheckpointError(FocalCodecError, RuntimeError):
    """Weights are missing, unreadable, or do not fit the configuration.

    A RuntimeError, as the original package's loader raised for models it could not get.
    """


class LoadError(FocalCodecError):
    """A model cannot be loaded for inference: ``cannot load model 'SOURCE': reason``
    (:func:`focalcodec.pipeline.models.load_codec`)."""


class InputError(FocalCodecError, ValueError):
    """An argument of an API call is unusable (wrong shape, dtype or range)."""


class AudioError(InputError):
    """Input audio is unusable (wrong shape or dtype, empty, too short, NaN/Inf, unreadable)."""


class DataError(InputError):
    """An audio folder or JSONL manifest is unusable (missing, empty, malformed line)."""


class FormatError(FocalCodecError, ValueError):
    """A compressed container or token folder is truncated, corrupted or from another model."""


class TruncatedError(FormatError, EOFError):
    """The container ends before its final packet (cut short while copying or writing)."""


class ChecksumError(FormatError):
    """A CRC32 does not match: the container was corrupted."""


class ModelMismatchError(FormatError):
    """The container was made by a different model than the one decoding it."""


class StreamingError(FocalCodecError, RuntimeError):
    """A streaming session was misused (non-causal model, call after flush, ...)."""


class OutputExistsError(FocalCodecError, FileExistsError):
    """The output exists and overwriting was not allowed, or it is one of the inputs."""


class OutputError(FocalCodecError, OSError):
    """An output cannot be written: the disk is full, the folder is not writable, the
    device fails. The message names the output and the system's reason."""


class UsageError(FocalCodecError):
    """Command-line arguments that cannot work together; exit status 2."""


class OnnxRuntimeMissingError(FocalCodecError, ImportError):
    """onnxruntime is not installed."""


class EvalError(FocalCodecError):
    """An evaluation cannot run as asked (bad data set, unknown metric, bad plugin)."""


class MetricUnavailable(FocalCodecError):
    """A metric cannot run here: its package or model is missing. The message says which."""


class ClippingWarning(UserWarning):
    """Audio reaches or exceeds full scale, so it is (or will be) distorted."""
