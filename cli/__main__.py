"""`python -m katib_nas.cli` is `katib-nas`."""

import sys

from .main import main

sys.exit(main())
