"""``python -m transferkit``: the same program as the ``transferkit`` command."""

import sys

from transferkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
