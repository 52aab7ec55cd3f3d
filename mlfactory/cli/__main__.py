"""``python -m mlfactory.cli``: the same as the ``mlfactory`` command."""

import sys

from mlfactory.cli import main

sys.exit(main())
