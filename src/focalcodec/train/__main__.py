"""``python -m focalcodec.train``: the ``focalcodec train`` command, usable by torchrun."""

import sys

from ..cli.train import main

sys.exit(main())
