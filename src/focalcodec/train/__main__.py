"""``python -m focalcodec.train``: the ``focalcodec train`` command, usable by torchrun."""

import sys

from .cli import main

sys.exit(main())
