"""``python -m kvcalc``."""

import sys

try:
    from kvcalc.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI module loads: the same line as any interrupt
    sys.stderr.write("Error: interrupted\n")
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
