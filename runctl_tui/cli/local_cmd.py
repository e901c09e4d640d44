"""`runctl local`, `runctl runs`, `runctl stop`, and the handler of `runctl checkpoint resume`.

`runctl local SCRIPT ARGS...` hands ARGS to the script untouched: runctl's own options come
before SCRIPT. The run is always detached (own session, log in `runs/<run-id>/train.log`);
in the foreground runctl only follows the log, so killing runctl never stops the training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from runctl_tui.cli.common import EXIT_FAILURE, EXIT_OK, Context, fail, print_json, warn
from runctl_tui.core.errors import RunctlError
from runctl_tui.core.models import Run

ORDER = 20
_RECENT_RUNS = 20


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    """Add the options every command that starts a local run takes, then SCRIPT [ARGS...].

    On a parser whose name ends in `resume` (`runctl checkpoint resume`) that has no
    positional argument yet, CKPT is added first, as `args.checkpoint`.

    Args:
        parser: The subcommand's parser.
    """
    has_positional = any(not action.option_strings for action in parser._actions)
    if parser.prog.split()[-1] == "resume" and not has_positional:
        parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or folder")
    parser.add_argument(
        "-b",
        "--background",
        action="store_true",
        help="start detached, print the run id and return at once",
    )
    parser.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="checkpoint directory (default: [local] checkpoint_dir); the run locks it",
    )
    parser.add_argument("--name", help="a short name, appended to the run id")
    parser.add_argument("script", metavar="SCRIPT", help="the training script (.py or executable)")
    parser.add_argument(
        "script_args",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="passed to the script verbatim (no `--` needed)",
    )


def register(subparsers: Any) -> None:
    """Add `local`, `runs` and `stop` to the `runctl` parser."""
    local = subparsers.add_parser(
        "local",
        help="run a training script on this computer",
        description="Run SCRIPT with ARGS on this computer, detached from this terminal: "
        "`uv run` when uv is on PATH, else Python. runctl's options go before SCRIPT. "
        "In the foreground, Ctrl-C detaches and the run goes on; `runctl stop RUN_ID` stops it.",
    )
    local.add_argument(
        "--resume-latest",
        action="store_true",
        help="resume from the newest checkpoint in the checkpoint directory",
    )
    add_launch_options(local)
    local.set_defaults(handler=cmd_local)

    runs = subparsers.add_parser("runs", help="list training runs (reconciled with processes)")
    runs.add_argument("--json", action="store_true", help="as JSON")
    runs.add_argument(
        "--all", action="store_true", help=f"every run (default: running + last {_RECENT_RUNS})"
    )
    runs.set_defaults(handler=cmd_runs)

    stop = subparsers.add_parser(
        "stop", help="stop a local run: SIGINT, then SIGTERM, then SIGKILL"
    )
    stop.add_argument("run_id", metavar="RUN_ID")
    stop.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="wait between signals (default: [local] stop_grace_seconds)",
    )
    stop.set_defaults(handler=cmd_stop)


def _start(
    args: argparse.Namespace,
    context: Context,
    *,
    resume_from: str | None,
    checkpoint_dir: str | None,
) -> int:
    from runctl_tui.core.local_runs import (
        follow_log,
        last_log_line,
        launch_local_run,
        reconcile,
        wait_for_exit,
    )
    from runctl_tui.core.runs import RunRegistry

    registry = RunRegistry()
    run = launch_local_run(
        context.config,
        args.script,
        args.script_args,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
        name=args.name,
        registry=registry,
        on_warning=warn,
    )
    if resume_from is not None:
        print(f"runctl: resuming from {resume_from}", file=sys.stderr)
    if args.background:
        # A script that dies at once (bad import, wrong flag) is reported now, not found later.
        status = wait_for_exit(run, 1.0)
        if status is not None and status.exit_code != 0:
            reconcile(registry)
            detail = last_log_line(run)
            return fail(
                f"{args.script} exited at once with code {status.exit_code}"
                + (f": {detail}" if detail else "")
                + f" (full output: {run.log_path})"
            )
        print(run.id)
        print(
            f"runctl: started run {run.id} (pid {run.pid}, {run.interpreter}); "
            f"log {run.log_path}; stop it with `runctl stop {run.id}`",
            file=sys.stderr,
        )
        return EXIT_OK
    out = sys.stdout.buffer

    def write(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    try:
        status = follow_log(run, write)
    except KeyboardInterrupt:
        print(
            f"\nrunctl: detached from run {run.id}; it keeps running (log {run.log_path}). "
            f"Stop it with `runctl stop {run.id}`.",
            file=sys.stderr,
        )
        return 130
    reconcile(registry)
    if status is None:
        return fail(
            f"run {run.id} ended without recording an exit status (killed with SIGKILL?); "
            f"see {run.log_path}"
        )
    if status.exit_code != 0:
        fail(
            f"{args.script} exited with code {status.exit_code}; its output is above and in "
            f"{run.log_path}"
        )
    return status.exit_code


def _resolve_dir(context: Context, value: str | None) -> Path:
    path = Path(value or context.config.local.checkpoint_dir).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def cmd_local(args: argparse.Namespace, context: Context) -> int:
    """`runctl local [--background] [--checkpoint-dir D] [--resume-latest] SCRIPT ARGS...`."""
    resume_from = None
    if args.resume_latest:
        from runctl_tui.core.local_runs import latest_checkpoint

        directory = _resolve_dir(context, args.checkpoint_dir)
        latest = latest_checkpoint(directory)
        if latest is None:
            raise RunctlError(
                f"no checkpoint found in {directory} to resume from; run without "
                "--resume-latest to start fresh, or pass --checkpoint-dir"
            )
        resume_from = str(latest)
    return _start(args, context, resume_from=resume_from, checkpoint_dir=args.checkpoint_dir)


def cmd_resume(args: argparse.Namespace, context: Context) -> int:
    """`runctl checkpoint resume CKPT SCRIPT ARGS...`: relaunch SCRIPT from checkpoint CKPT.

    The checkpoint is passed with `[local] resume_flag` (default `--resume {path}`); the run
    writes new checkpoints next to CKPT unless `--checkpoint-dir` says otherwise.
    """
    checkpoint = next(
        (
            value
            for value in (
                getattr(args, name, None) for name in ("checkpoint", "ckpt", "path", "CKPT")
            )
            if value
        ),
        None,
    )
    if checkpoint is None:
        raise RunctlError("name the checkpoint to resume from: runctl checkpoint resume CKPT ...")
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise RunctlError(
            f"checkpoint {checkpoint} not found; `runctl checkpoint list DIR` shows the "
            "checkpoints there"
        )
    checkpoint_dir = getattr(args, "checkpoint_dir", None) or str(path.resolve().parent)
    return _start(args, context, resume_from=str(path.resolve()), checkpoint_dir=checkpoint_dir)


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status.value,
        "pid": run.pid,
        "backend": run.backend.value,
        "machine": run.machine,
        "script": run.script,
        "args": list(run.args),
        "cwd": run.cwd,
        "interpreter": run.interpreter,
        "started": run.started,
        "started_iso": _iso(run.started),
        "ended": run.ended,
        "ended_iso": _iso(run.ended) if run.ended is not None else None,
        "exit_code": run.exit_code,
        "log_path": run.log_path,
        "checkpoint_dir": run.checkpoint_dir,
        "note": run.note,
    }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def cmd_runs(args: argparse.Namespace, context: Context) -> int:
    """`runctl runs [--json] [--all]`: reconcile local runs, then list them newest first."""
    import humanize

    from runctl_tui.core.local_runs import reconcile
    from runctl_tui.core.runs import RunRegistry

    registry = RunRegistry()
    reconcile(registry)
    runs = registry.list()
    if not args.all:
        recent = {run.id for run in runs[:_RECENT_RUNS]}
        runs = [run for run in runs if run.id in recent or not run.status.is_final]
    if args.json:
        print_json([_run_json(run) for run in runs])
        return EXIT_OK
    if not runs:
        print("No runs yet. Start one with: runctl local SCRIPT [ARGS...]")
        return EXIT_OK
    now = time.time()
    rows = [("ID", "STATUS", "PID", "WHERE", "STARTED", "EXIT", "COMMAND")]
    for run in runs:
        where = (
            run.machine
            if run.machine == run.backend.value
            else f"{run.backend.value}:{run.machine}"
        )
        command = " ".join([run.script, *run.args])
        rows.append(
            (
                run.id,
                run.status.value,
                str(run.pid or ""),
                where,
                humanize.naturaltime(now - run.started),
                "" if run.exit_code is None else str(run.exit_code),
                command if len(command) <= 60 else command[:59] + "…",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
        )
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, context: Context) -> int:
    """`runctl stop RUN_ID [--grace S]`: stop a local run and report how it ended."""
    from runctl_tui.core.local_runs import latest_checkpoint, reconcile, stop_run
    from runctl_tui.core.runs import RunRegistry

    registry = RunRegistry()
    reconcile(registry)
    run = stop_run(context.config, args.run_id, grace=args.grace, registry=registry)
    print(f"Stopped run {run.id}: {run.note.rsplit('; ', 1)[-1]}.")
    newest = latest_checkpoint(Path(run.checkpoint_dir))
    if newest is not None:
        print(f"Newest checkpoint: {newest}")
    return EXIT_OK if run.status.is_final else EXIT_FAILURE
