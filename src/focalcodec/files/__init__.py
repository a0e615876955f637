"""File utilities below the model: audio in and out (``audio``), atomic outputs
(``atomic``) and the one scanner of audio folders and JSONL manifests (``manifest``).

A leaf package: nothing here imports the model, so the core can use it (checkpoints are
written atomically); it imports only :mod:`focalcodec.errors` and its own modules.
"""
