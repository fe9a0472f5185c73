"""`python -m katib_nas.cli` is `katib-nas`."""

from .main import entry

entry()
