"""CLI helpers shared by the commands for remote machines (`runctl aws`, `runctl runpod`).

Import-light on purpose: every `runctl` call imports the *_cmd modules that use this one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runctl_tui.cli.common import EXIT_FAILURE, fail
from runctl_tui.core.secrets import scrub

if TYPE_CHECKING:
    from runctl_tui.core.logsource import LogChunk
    from runctl_tui.core.models import Machine


def add_script_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `[-b] SCRIPT ARGS...` to a `train` parser: runctl's options go before SCRIPT.

    Args:
        parser: The `train` subcommand's parser; its other options are added before this call.
    """
    parser.add_argument(
        "-b", "--background", action="store_true", help="start and return (do not follow)"
    )
    parser.add_argument("script", metavar="SCRIPT")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS")


def status(line: str) -> None:
    """Print a progress line to stderr, indented and with secrets scrubbed.

    Args:
        line: What is happening.
    """
    print(f"  {scrub(line)}", file=sys.stderr, flush=True)


def print_chunk(chunk: LogChunk) -> None:
    """Print a followed log's complete lines to stdout (scrubbed) and its notice as a status.

    Args:
        chunk: The next chunk from a `LogSource`.
    """
    for line in chunk.lines:
        print(scrub(line), flush=True)
    if chunk.notice:
        status(chunk.notice)


def uptime_text(machine: Machine) -> str:
    """How long a machine has been up, in words (`-` when unknown).

    Args:
        machine: The machine.

    Returns:
        E.g. `2 hours`.
    """
    seconds = machine.uptime_seconds()
    if seconds is None:
        return "-"
    import humanize

    return str(humanize.naturaldelta(seconds))


def print_table(rows: Sequence[Sequence[object]]) -> None:
    """Print rows as left-aligned columns two spaces apart, without trailing blanks.

    Args:
        rows: The header row first, then one row per item; cells are printed with `str`.
    """
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def confirm_terminate(question: str, without_terminal: str) -> int | None:
    """Ask `question [y/N]` before terminating, when stdin is a terminal.

    Args:
        question: E.g. `Terminate i-123 (name) and delete its disk?`.
        without_terminal: The failure to report when there is no terminal to ask on.

    Returns:
        None when the user said yes; else the exit code to return (the reason already printed).
    """
    if not sys.stdin.isatty():
        return fail(without_terminal, EXIT_FAILURE)
    answer = input(f"{question} [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        print("Not terminated.")
        return EXIT_FAILURE
    return None


__all__ = [
    "add_script_arguments",
    "confirm_terminate",
    "print_chunk",
    "print_table",
    "status",
    "uptime_text",
]
