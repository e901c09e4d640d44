"""`python -m runctl_tui` runs the scriptable `runctl` command."""

from runctl_tui.cli import main

raise SystemExit(main())
