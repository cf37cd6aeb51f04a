"""`python -m rag ...`: the `rag` command, for environments where the script is not on PATH."""

import sys

from rag.cli import main

sys.exit(main())
