"""``python -m kvcalc``."""

import sys

from kvcalc.cli import main

if __name__ == "__main__":
    sys.exit(main())
