"""`python -m tavus_callbacks.cli`: the same as the `tavus-callbacks` command."""

import sys

from tavus_callbacks.cli import main

sys.exit(main())
