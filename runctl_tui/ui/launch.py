"""`runctl-tui`: parse the few options, then import and run the dashboard.

Textual is imported only after argument parsing, so `runctl-tui --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runctl_tui import __version__

if TYPE_CHECKING:
    from runctl_tui.core.config import Config

DEMO_ARGS = ("--epochs", "20", "--steps-per-epoch", "60", "--sleep", "0.5")
"""The demo runs for about ten minutes: long enough to look around, short enough to forget."""


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


def start_demo_run(config: Config, workdir: Path) -> tuple[str, bool]:
    """Start the bundled example training in `workdir`, unless a demo run is still going.

    Args:
        config: The effective configuration.
        workdir: Where the demo's `runs/` and `checkpoints/` folders go.

    Returns:
        The id of the run (recorded in the run registry) and whether it was started now.
    """
    from runctl_tui.core import paths
    from runctl_tui.core.local_runs import launch_local_run
    from runctl_tui.core.models import Provider, RunStatus
    from runctl_tui.core.runs import RunRegistry

    script = Path(__file__).resolve().parent.parent / "examples" / "train_demo.py"
    for run in RunRegistry().list(Provider.LOCAL):
        same_script = Path(run.script).name == script.name and Path(run.cwd) == workdir
        if run.status is RunStatus.RUNNING and same_script:
            return run.id, False
    paths.ensure_dir(workdir)
    run = launch_local_run(config, str(script), list(DEMO_ARGS), cwd=workdir, name="demo")
    return run.id, True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard and return the exit code."""
    args = build_parser().parse_args(argv)
    from runctl_tui.core import paths
    from runctl_tui.core.config import load_config
    from runctl_tui.core.errors import ConfigError, RunctlError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"runctl-tui: {exc}", file=sys.stderr)
        return 3
    for warning in config.warnings:
        print(f"runctl-tui: warning: {warning}", file=sys.stderr)
    select = None
    if args.demo:
        try:
            run_id, started = start_demo_run(config, paths.state_dir() / "demo")
        except RunctlError as exc:
            print(f"runctl-tui: could not start the demo: {exc}", file=sys.stderr)
            return 1
        what = "started" if started else "is still running; watching it"
        print(f"runctl-tui: demo run {run_id} {what}", file=sys.stderr)
        select = "local:local"
    from runctl_tui.ui.app import RunctlApp

    app = RunctlApp(config, readonly=args.readonly, select=select)
    app.run()
    if args.demo:
        print("runctl-tui: the demo run keeps going; `runctl runs` lists it.", file=sys.stderr)
    return app.return_code or 0
