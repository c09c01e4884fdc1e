"""``python -m asgd_bridge.convert INPUT -o OUTPUT``: the same as ``asgd-bridge convert``."""

import sys

from .cli import main

sys.exit(main())
