"""`runctl`: the scriptable command line over the same core as the dashboard.

Each subcommand lives in a `*_cmd.py` module of this package that defines
`register(subparsers)`; modules are found automatically, so an issue adds its commands without
touching this file. Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 config error.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from runctl_tui import __version__
from runctl_tui.cli.common import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, Context, fail
from runctl_tui.core.errors import ConfigError, RunctlError
from runctl_tui.core.logging_setup import configure_logging, get_logger
from runctl_tui.core.secrets import scrub


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand module registered."""
    parser = argparse.ArgumentParser(
        prog="runctl",
        description="Train ML models locally, on RunPod pods and on AWS EC2, from scripts.",
        epilog="The dashboard is `runctl-tui`. Exit codes: 0 ok, 1 failed, 2 usage, 3 config.",
    )
    parser.add_argument("--version", action="version", version=f"runctl {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (else RUNCTL_CONFIG, ...)")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more detail in runctl's log file"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = sorted(
        (
            importlib.import_module(f"{__name__}.{info.name}")
            for info in pkgutil.iter_modules(__path__)
            if info.name.endswith("_cmd")
        ),
        key=lambda module: (getattr(module, "ORDER", 50), module.__name__),
    )
    for module in modules:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `runctl` with `argv` (default `sys.argv[1:]`) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    log_path = configure_logging(args.verbose)
    log = get_logger("cli")
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_OK
    context = Context(config_path=args.config, log_path=log_path)
    log.debug("command %s", args.command)
    try:
        return int(args.handler(args, context))
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    except RunctlError as exc:
        log.info("command failed: %s", exc)
        return fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `runctl ... | head` closed the pipe: not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        log.exception("unexpected error in %s", args.command)
        return fail(
            f"unexpected error: {scrub(str(exc)) or type(exc).__name__}. "
            f"Details are in {log_path}.",
            EXIT_FAILURE,
        )
