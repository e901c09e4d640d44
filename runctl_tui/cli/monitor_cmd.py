"""`runctl monitor --log FILE [--follow] [-n N]` and `runctl monitor --checkpoint DIR [--follow]`.

The log form prints the tail (progress bars collapsed to their latest state) and follows the
file like `tail -F`; the checkpoint form prints checkpoints as they appear. Both can run at
once. Heavy imports (watchfiles, the checkpoint readers) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl_tui.cli.common import EXIT_OK, EXIT_USAGE, Context, fail
from runctl_tui.core.aio import wait_for
from runctl_tui.core.errors import NotFoundError

if TYPE_CHECKING:
    from runctl_tui.core.checkpoints import CheckpointEntry

ORDER = 40
RECHECK_SECONDS = 1.0
"""How soon a checkpoint seen while still being written is looked at again."""


def register(subparsers: Any) -> None:
    """Add `monitor` to the `runctl` parser."""
    monitor = subparsers.add_parser(
        "monitor",
        help="print a log's tail and follow it; print checkpoints as they appear",
        description=(
            "Print the last lines of a training log (progress bars shown once, in their latest "
            "state) and, with --follow, keep printing like `tail -F`: survives truncation, "
            "rotation and a file that does not exist yet. With --checkpoint, print the "
            "checkpoints in DIR, and with --follow each new one as it is finished."
        ),
    )
    monitor.add_argument("--log", metavar="FILE", help="log file to print and follow")
    monitor.add_argument(
        "--checkpoint", metavar="DIR", help="checkpoint directory to print and watch"
    )
    monitor.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until interrupted (Ctrl-C)"
    )
    monitor.add_argument(
        "-n",
        "--lines",
        type=int,
        default=20,
        metavar="N",
        help="log lines to print first (default: %(default)s)",
    )
    monitor.add_argument(
        "--json", action="store_true", help="checkpoints as JSON lines (one object per line)"
    )
    monitor.set_defaults(handler=cmd_monitor)


class _Printer:
    """Writes lines to stdout; on a terminal, shows the progress line in place."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self._partial_shown = False

    def lines(self, lines: tuple[str, ...] | list[str], partial: str | None = None) -> None:
        from runctl_tui.core.logs import strip_ansi

        out = sys.stdout
        if self._partial_shown:
            out.write("\r\x1b[K")
            self._partial_shown = False
        if lines:
            text = "\n".join(lines) + "\n"
            out.write(text if self.tty else strip_ansi(text))
        if partial and self.tty:
            out.write(partial)
            self._partial_shown = True
        out.flush()

    def notice(self, message: str) -> None:
        self.lines([])
        print(f"runctl: {message}", file=sys.stderr, flush=True)


def _checkpoint_text(entry: CheckpointEntry, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "event": "checkpoint",
                "path": entry.path,
                "name": entry.name,
                "format": entry.format,
                "size_bytes": entry.size_bytes,
                "modified": entry.modified,
                "writing": entry.writing,
            }
        )
    import humanize

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.modified))
    state = ", being written" if entry.writing else ""
    return (
        f"checkpoint {entry.path} ({entry.format}, "
        f"{humanize.naturalsize(entry.size_bytes, binary=True)}, {when}{state})"
    )


def cmd_monitor(args: argparse.Namespace, context: Context) -> int:
    """Print (and with --follow, keep printing) a log and/or a checkpoint directory."""
    if not args.log and not args.checkpoint:
        return fail("give --log FILE and/or --checkpoint DIR", EXIT_USAGE)
    if args.lines < 0:
        return fail("-n/--lines must be 0 or more", EXIT_USAGE)
    printer = _Printer()
    log = Path(args.log).expanduser() if args.log else None
    directory = Path(args.checkpoint).expanduser() if args.checkpoint else None
    if not args.follow:
        if log is not None:
            _print_tail(log, args.lines, printer)
        if directory is not None:
            _print_checkpoints_once(directory, args.json, printer)
        return EXIT_OK
    asyncio.run(_follow_all(log, directory, args, context, printer))
    return EXIT_OK


def _print_tail(log: Path, lines: int, printer: _Printer) -> None:
    from runctl_tui.core.logs import tail_lines

    try:
        printer.lines(tail_lines(log, lines))
    except FileNotFoundError:
        raise NotFoundError(
            f"log file {log} does not exist; check the path, or add --follow to wait for it"
        ) from None
    except IsADirectoryError:
        raise NotFoundError(f"{log} is a directory, not a log file") from None


def _list(directory: Path) -> list[CheckpointEntry]:
    from runctl_tui.core.checkpoints import list_checkpoints

    return sorted(list_checkpoints(directory), key=lambda entry: (entry.modified, entry.path))


def _print_checkpoints_once(directory: Path, as_json: bool, printer: _Printer) -> None:
    if not directory.is_dir():
        raise NotFoundError(
            f"checkpoint directory {directory} does not exist; check the path, or add "
            "--follow to wait for it"
        )
    entries = _list(directory)
    printer.lines([_checkpoint_text(entry, as_json) for entry in entries])
    if not entries and not as_json:
        printer.notice(f"no checkpoints in {directory} yet")


async def _follow_all(
    log: Path | None,
    directory: Path | None,
    args: argparse.Namespace,
    context: Context,
    printer: _Printer,
) -> None:
    poll = context.config.monitor.log_poll_seconds
    tasks = []
    if log is not None:
        tasks.append(_follow_log(log, args.lines, poll, printer))
    if directory is not None:
        tasks.append(_follow_checkpoints(directory, args.json, poll, printer))
    await asyncio.gather(*tasks)


async def _follow_log(log: Path, lines: int, poll: float, printer: _Printer) -> None:
    from runctl_tui.core.logs import FileLogSource

    source = FileLogSource(log, poll_interval=poll)
    async for chunk in source.follow(initial_lines=lines):
        if chunk.notice:
            printer.notice(chunk.notice)
        printer.lines(chunk.lines, chunk.partial)


async def _follow_checkpoints(
    directory: Path, as_json: bool, poll: float, printer: _Printer
) -> None:
    from watchfiles import awatch

    from runctl_tui.core.checkpoints import WriteTracker

    tracker = WriteTracker()
    printed: set[tuple[str, int, float]] = set()
    announced_wait = False
    while not directory.is_dir():
        if not announced_wait:
            printer.notice(f"waiting for {directory} to appear")
            announced_wait = True
        await asyncio.sleep(poll)

    def report() -> bool:
        """Print finished checkpoints not printed yet; True while some are being written."""
        entries = tracker.observe(_list(directory)) if directory.is_dir() else []
        busy = False
        fresh = []
        for entry in entries:
            key = (entry.path, entry.size_bytes, entry.modified)
            if entry.writing:
                busy = True
            elif key not in printed:  # new, or saved again under the same name
                printed.add(key)
                fresh.append(_checkpoint_text(entry, as_json))
        if fresh:
            printer.lines(fresh)
        return busy

    # The first look cannot tell a finished file from one being written: look twice.
    tracker.observe(_list(directory))
    busy = report()
    stop = asyncio.Event()
    wake = asyncio.Event()

    async def watch() -> None:
        async for _changes in awatch(
            directory, stop_event=stop, debounce=400, step=50, rust_timeout=1000
        ):
            wake.set()

    watcher = asyncio.create_task(watch())
    try:
        while True:
            timeout = RECHECK_SECONDS if busy else max(poll, 5.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await wait_for(wake.wait(), timeout)
            wake.clear()
            busy = report()
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
