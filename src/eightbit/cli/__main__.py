"""``python -m eightbit.cli``."""

import sys

from eightbit.cli import main

sys.exit(main())
