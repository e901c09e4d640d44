"""`runctl checkpoint list|inspect|cleanup|resume`: find, read safely, prune and resume."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from runctl_tui.cli.common import EXIT_FAILURE, EXIT_OK, Context, fail, print_json

ORDER = 40

SETTLE_SECONDS = 1.0
"""Cleanup looks twice this far apart; a checkpoint whose size changed is being written."""


def register(subparsers: Any) -> None:
    """Add `checkpoint` and its actions to the `runctl` parser."""
    group = subparsers.add_parser(
        "checkpoint", help="list, inspect (safely), clean up and resume from checkpoints"
    )
    actions = group.add_subparsers(dest="checkpoint_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="checkpoints below DIR (or an s3:// prefix), newest first"
    )
    listing.add_argument("directory", metavar="DIR", help="local folder or s3://bucket/prefix")
    listing.add_argument("--json", action="store_true", help="as a JSON list")
    listing.add_argument(
        "--names-only",
        action="store_true",
        help="names and stat data only: no file headers read (best by name metrics only)",
    )
    listing.set_defaults(handler=cmd_list)

    inspect = actions.add_parser(
        "inspect", help="what a checkpoint holds, from its headers; never loads or runs it"
    )
    inspect.add_argument("path", metavar="PATH", help="file, shard index or checkpoint-N/ folder")
    inspect.add_argument("--json", action="store_true", help="as one JSON object")
    inspect.set_defaults(handler=cmd_inspect)

    cleanup = actions.add_parser(
        "cleanup", help="delete all but the newest N, the best and protected checkpoints"
    )
    cleanup.add_argument("directory", metavar="DIR")
    cleanup.add_argument(
        "--keep-last",
        type=int,
        metavar="N",
        help="newest checkpoints to keep (default: [checkpoints] keep_last)",
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    cleanup.add_argument("--yes", action="store_true", help="delete without asking")
    cleanup.add_argument("--json", action="store_true", help="print the plan/result as JSON")
    cleanup.set_defaults(handler=cmd_cleanup)

    try:
        from runctl_tui.cli.local_cmd import add_launch_options, cmd_resume
    except ImportError:
        return  # the local-runs commands are not installed: no resume
    resume = actions.add_parser(
        "resume", help="start SCRIPT again from checkpoint CKPT (a new local run)"
    )
    resume.add_argument("checkpoint", metavar="CKPT", help="checkpoint file or folder")
    add_launch_options(resume)
    resume.set_defaults(handler=cmd_resume)


def _human_size(size: int) -> str:
    import humanize

    return str(humanize.naturalsize(size, binary=True))


def _age(modified: float) -> str:
    import datetime as dt

    import humanize

    return str(humanize.naturaltime(dt.timedelta(seconds=max(0.0, time.time() - modified))))


def cmd_list(args: argparse.Namespace, context: Context) -> int:
    """Print the checkpoints below DIR newest first, the best marked."""
    from runctl_tui.core.checkpoints import (
        InspectCache,
        fill_from_headers,
        find_best,
        list_checkpoints,
        list_s3_checkpoints,
    )

    settings = context.config.checkpoints
    if args.directory.startswith("s3://"):
        from runctl_tui.core.backends.aws import AwsClients

        entries = list_s3_checkpoints(args.directory, AwsClients(context.config.aws).client("s3"))
    else:
        entries = list_checkpoints(Path(args.directory).expanduser())
    cache = InspectCache()
    find_best(
        entries,
        metric=settings.best_metric,
        mode=settings.best_mode,
        read_contents=not args.names_only,
        inspect=cache,
    )
    if not args.names_only:
        fill_from_headers(entries, cache)
    if args.json:
        print_json([entry.to_json() for entry in entries])
        return EXIT_OK
    if not entries:
        print(f"no checkpoints below {args.directory}")
        return EXIT_OK
    width = max(len(e.name) for e in entries)
    for entry in entries:
        marks = []
        if entry.best:
            marks.append(f"best: {entry.best_reason}")
        if entry.aliases:
            marks.append("alias " + ", ".join(entry.aliases))
        if entry.writing:
            marks.append("being written")
        if entry.error:
            marks.append(entry.error)
        metric = next(
            (
                f"{name}={entry.metrics[name]:.4g}"
                for name in (settings.best_metric, "val_loss", "eval_loss", "loss")
                if name in entry.metrics
            ),
            "",
        )
        if metric:
            marks.insert(0, metric)
        step = "-" if entry.step is None else str(entry.step)
        epoch = "-" if entry.epoch is None else str(entry.epoch)
        print(
            f"{'*' if entry.best else ' '} {entry.name:<{width}}  {entry.format:<12} "
            f"{_human_size(entry.size_bytes):>10}  {_age(entry.modified):<16} "
            f"step {step:>7}  epoch {epoch:>4}" + (f"  [{'; '.join(marks)}]" if marks else "")
        )
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace, context: Context) -> int:
    """Describe one checkpoint from its headers; exit 1 with the reason when it is unreadable."""
    from runctl_tui.core.checkpoints import inspect_checkpoint
    from runctl_tui.core.errors import NotFoundError

    path = Path(args.path).expanduser()
    if not path.exists() and not path.is_symlink():
        raise NotFoundError(
            f"{path} does not exist; `runctl checkpoint list DIR` shows checkpoints"
        )
    info = inspect_checkpoint(path)
    if args.json:
        print_json(info.to_json())
    else:
        rows = [
            ("path", info.path),
            ("format", info.format),
            ("size", f"{_human_size(info.size_bytes)} ({info.size_bytes} bytes)"),
            ("tensors", info.tensor_count),
            ("parameters", None if info.parameter_count is None else f"{info.parameter_count:,}"),
            ("dtypes", ", ".join(f"{k}: {v}" for k, v in info.dtypes.items()) or None),
            ("epoch", info.epoch),
            ("step", info.step),
            ("metrics", ", ".join(f"{k}={v:.6g}" for k, v in info.metrics.items()) or None),
            ("keys", ", ".join(info.keys[:20]) + (" ..." if len(info.keys) > 20 else "") or None),
            ("metadata", ", ".join(f"{k}={v}" for k, v in info.metadata.items()) or None),
            ("best record", ", ".join(f"{k}={v}" for k, v in info.best_record.items()) or None),
        ]
        for label, value in rows:
            if value is not None and value != "":
                print(f"{label:>12}: {value}")
    if info.error:
        return fail(f"{path}: {info.error}", EXIT_FAILURE)
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace, context: Context) -> int:
    """Delete all but the newest N, the best, protected ones and any being written."""
    from runctl_tui.core.checkpoints import (
        InspectCache,
        execute_cleanup,
        find_best,
        list_checkpoints,
        open_for_writing,
        plan_cleanup,
    )
    from runctl_tui.core.checkpoints.writing import WriteTracker
    from runctl_tui.core.errors import RunctlError

    settings = context.config.checkpoints
    keep_last = settings.keep_last if args.keep_last is None else args.keep_last
    if keep_last < 0:
        raise RunctlError("--keep-last must be 0 or more")
    directory = Path(args.directory).expanduser()
    # Two looks a moment apart: a checkpoint whose size moves is being written right now.
    tracker = WriteTracker()
    tracker.observe(list_checkpoints(directory))
    time.sleep(SETTLE_SECONDS)
    entries = tracker.observe(list_checkpoints(directory))
    cache = InspectCache()
    find_best(entries, metric=settings.best_metric, mode=settings.best_mode, inspect=cache)
    busy = open_for_writing(p for e in entries for p in (e.parts or [e.path]))
    plan = plan_cleanup(
        entries,
        keep_last=keep_last,
        protected=settings.protected,
        writing=busy,
        is_readable=lambda e: cache(Path(e.path)).error is None,
    )
    if args.json and args.dry_run:
        print_json(_plan_json(plan, dry_run=True))
        return EXIT_OK
    if not args.json:
        _print_plan(plan)
    if args.dry_run or not plan.delete:
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            return fail(
                "not deleting without confirmation: pass --yes (or --dry-run to look first)"
            )
        answer = input(
            f"Delete {len(plan.delete)} checkpoint(s), freeing {_human_size(plan.freed_bytes)}? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return EXIT_OK
    result = execute_cleanup(plan)
    if args.json:
        data = _plan_json(plan, dry_run=False)
        data["deleted"] = [e.path for e in result.deleted]
        data["skipped"] = [{"path": e.path, "reason": r} for e, r in result.skipped]
        data["freed_bytes"] = result.freed_bytes
        print_json(data)
    else:
        for entry, reason in result.skipped:
            print(f"skipped {entry.name}: {reason}")
        print(
            f"deleted {len(result.deleted)} checkpoint(s), freed {_human_size(result.freed_bytes)}"
        )
    return EXIT_OK if not result.skipped else EXIT_FAILURE


def _plan_json(plan: Any, *, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "delete": [
            {"path": e.path, "name": e.name, "size_bytes": e.size_bytes} for e in plan.delete
        ],
        "keep": [{"path": e.path, "name": e.name, "reason": r} for e, r in plan.keep],
        "freed_bytes": plan.freed_bytes,
    }


def _print_plan(plan: Any) -> None:
    for entry, reason in plan.keep:
        print(f"keep    {entry.name}  ({reason})")
    for entry in plan.delete:
        print(f"delete  {entry.name}  ({_human_size(entry.size_bytes)})")
    print(
        f"{len(plan.delete)} to delete, freeing {_human_size(plan.freed_bytes)} ({plan.freed_bytes} bytes)"
    )
