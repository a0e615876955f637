"""The ``focalcodec`` command line (also ``python -m focalcodec``).

:mod:`.app` is the dispatcher: an explicit table of verbs, each in a module of its own
(``encode.py``, ``decode.py``, ...) with ``add_arguments(parser)`` and ``run(args)``.
Options shared by several verbs are defined once in :mod:`.options`, the batch
machinery (input planning, per-file errors, progress) in :mod:`.batch`, and the one-line
messages in :mod:`.report`. Conventions are in ``docs/cli.md``.
"""

from .app import main

__all__ = ["main"]
