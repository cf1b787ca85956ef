"""``python -m gradprobe``: the same as the ``gradprobe`` console script."""

import sys

from gradprobe.cli.main import main

sys.exit(main())
