"""``python -m visor`` runs the command line."""

import sys

from visor.cli.main import main

sys.exit(main())
