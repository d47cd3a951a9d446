"""``python -m controller`` runs canaryctl."""

from controller.cli import main

main()
