"""FocalCodec: speech to a single stream of binary tokens at 0.16-0.65 kbps, and back."""

__version__ = "0.1.0"

from .codec import CodecOutput, FocalCodec  # noqa: E402
from .errors import (  # noqa: E402
    AudioError,
    CheckpointError,
    ConfigError,
    FocalCodecError,
    FormatError,
    InputError,
    StreamingError,
)
from .pretrained import list_models  # noqa: E402

__all__ = [
    "AudioError",
    "CheckpointError",
    "CodecOutput",
    "ConfigError",
    "FocalCodec",
    "FocalCodecError",
    "FormatError",
    "InputError",
    "StreamingError",
    "__version__",
    "list_models",
]
