import sys

from hierbayes.io.cli import main

sys.exit(main())
