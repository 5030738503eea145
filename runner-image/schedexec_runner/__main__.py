"""`python -m schedexec_runner` runs one run (see main.py)."""

import sys

from schedexec_runner.main import main

sys.exit(main())
