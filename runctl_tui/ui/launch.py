"""`runctl-tui`: parse the few options, then import and run the dashboard.

Textual is imported only after argument parsing, so `runctl-tui --help` is instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from runctl_tui import __version__


def build_parser() -> argparse.ArgumentParser:
    """Options of the dashboard command."""
    parser = argparse.ArgumentParser(
        prog="runctl-tui",
        description="The runctl dashboard: machines, runs, logs, checkpoints and loss curves.",
        epilog="Quitting the dashboard never stops training runs or machines.",
    )
    parser.add_argument("--version", action="version", version=f"runctl-tui {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (else RUNCTL_CONFIG, ...)")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the bundled example training locally and watch it",
    )
    parser.add_argument(
        "--readonly", action="store_true", help="disable every action that changes anything"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard and return the exit code."""
    args = build_parser().parse_args(argv)
    from runctl_tui.ui.app import RunctlApp

    app = RunctlApp(config_path=args.config, demo=args.demo, readonly=args.readonly)
    app.run()
    return app.return_code or 0
