"""`python -m tunescout` is the `tunescout` command."""

import sys

from tunescout.cli.main import main

sys.exit(main())
