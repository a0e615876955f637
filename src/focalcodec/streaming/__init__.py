"""Audio of any length: live streaming for causal models, windows for long inputs.

``steps`` (one model call on a block, with explicit state), ``session`` (buffering
pieces of any length, calling a model only through the step functions of the
:class:`~focalcodec.protocol.Codec` protocol; what ``codec.streaming()`` opens),
``batch`` (many independent streams stepped together, for servers) and ``longform``
(hours of audio in bounded memory).
"""

from .batch import StreamBatch
from .session import StreamDecoder, StreamEncoder, StreamingSession, StreamTail
from .steps import StreamState, decode_step, encode_step

__all__ = [
    "StreamBatch",
    "StreamDecoder",
    "StreamEncoder",
    "StreamState",
    "StreamTail",
    "StreamingSession",
    "decode_step",
    "encode_step",
]
