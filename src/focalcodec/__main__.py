"""``python -m focalcodec``: the same command line as the ``focalcodec`` script."""

import sys

from .cli.app import main

if __name__ == "__main__":
    sys.exit(main())
