"""Audio of any length: live streaming for causal models, windows for long inputs.

``steps`` (one model call on a block, with explicit state), ``runner`` (how a session
calls a model), ``session`` (buffering pieces of any length; what users open with
``codec.streaming()``) and ``longform`` (hours of audio in bounded memory).
"""

from .session import StreamDecoder, StreamEncoder, StreamingSession, StreamTail
from .steps import StreamState, decode_step, encode_step

__all__ = [
    "StreamDecoder",
    "StreamEncoder",
    "StreamState",
    "StreamTail",
    "StreamingSession",
    "decode_step",
    "encode_step",
]
