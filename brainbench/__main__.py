"""`python -m brainbench`: the `brainbench` command."""

from brainbench.cli import main

raise SystemExit(main())
