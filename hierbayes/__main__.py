"""``python -m hierbayes``: the command line (:mod:`hierbayes.io.cli`)."""

import sys

from hierbayes.io.cli import main

if __name__ == "__main__":
    sys.exit(main())
