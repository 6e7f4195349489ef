"""`python -m slimkit ...` is the `slimkit` command (the form the multi-process launcher starts)."""

from .run.cli import main

raise SystemExit(main())
