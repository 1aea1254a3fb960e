"""`python -m tunescout` is the `tunescout` command."""

import sys

from tunescout.cli import main

sys.exit(main())
