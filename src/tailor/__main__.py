"""``python -m tailor`` runs the CLI."""

import sys

from tailor.cli import main

sys.exit(main())
