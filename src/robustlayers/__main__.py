"""``python -m robustlayers`` runs the ``robustlayers`` command."""

import sys

from robustlayers.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
