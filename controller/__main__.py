"""``python -m controller`` runs the daemon (as ``canaryctl run``); with arguments, it is ``canaryctl``."""

import sys

from controller.cli import main

if len(sys.argv) == 1:
    sys.argv.append("run")
main()
