"""Files: audio in and out (``audio``), atomic writes (``atomic``), the ``.fcz`` bitstream
(``bitstream``) and its compress API (``compress``), files of any length piece by piece
(``longaudio``), token folders (``tokens``), speaker banks (``banks``) and the one
manifest scanner (``manifest``).

Imports point downward: ``bitstream`` knows bytes only; ``compress`` knows the model and
the bytes; the command line calls them. This ``__init__`` imports nothing, so the core
model can use ``atomic`` without loading the rest.
"""
