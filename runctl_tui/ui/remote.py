"""What the panes and actions use for runs on pods and instances, per provider.

The provider modules (`core/runpod_training.py`, `core/aws_training.py`) know where a remote
run's log and checkpoints are and how to start one; this module picks the right one for a
row and turns their failures into a sentence for the pane. Each is imported when first used.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import FleetRow
from runctl_tui.core.models import Provider, Run
from runctl_tui.core.secrets import scrub

CHECK_TIMEOUT_SECONDS = 20.0
"""How long the terminate dialog waits for a machine to list its checkpoints."""

_MODULES = {
    Provider.RUNPOD: "runctl_tui.core.runpod_training",
    Provider.AWS: "runctl_tui.core.aws_training",
}


def _module(provider: Provider) -> Any:
    return importlib.import_module(_MODULES[provider])


def _text(exc: BaseException) -> str:
    return scrub(str(exc) or type(exc).__name__)


def remote_log_source(row: FleetRow, run: Run, config: Config) -> tuple[Any | None, str]:
    """The log of a run on a pod or instance (remote `tail -F` over SSH).

    Returns:
        (source or None, description or why there is none).
    """
    machine = row.machine
    try:
        module = _module(machine.provider)
        if machine.provider is Provider.RUNPOD:
            source = module.log_source(machine, run)
        else:
            source = module.log_source(config, machine, run)
    except Exception as exc:
        return None, f"no log: {_text(exc)}"
    host = machine.ssh.host if machine.ssh else machine.id
    return source, f"{host}:{run.log_path}"


def checkpoint_lister(
    row: FleetRow, run: Run, config: Config, backend: Any
) -> tuple[Callable[[], Awaitable[list[Any]]] | None, str]:
    """A function listing the run's checkpoints where they are (pod over SSH, S3 for EC2 runs
    with an output bucket, else the instance over SSH).

    Returns:
        (lister or None, label or why there is none).
    """
    machine = row.machine
    if machine.ssh is None or machine.ssh.interactive_only:
        return None, "checkpoints: the machine has no direct SSH endpoint"
    try:
        module = _module(machine.provider)
    except Exception as exc:
        return None, f"checkpoints: {_text(exc)}"
    directory = run.checkpoint_dir
    if machine.provider is Provider.RUNPOD:

        async def list_pod() -> list[Any]:
            found: list[Any] = await module.list_pod_checkpoints(machine, directory)
            return found

        return list_pod, f"{machine.name or machine.id}:{directory}"

    async def list_instance() -> list[Any]:
        ssh = importlib.import_module("runctl_tui.core.ssh")
        classify = importlib.import_module("runctl_tui.core.checkpoints").classify_remote
        async with await ssh.SshSession.connect(machine.ssh) as session:
            files = await session.list_files(directory)
        found: list[Any] = classify(list(files), directory)
        return found

    return list_instance, f"{machine.name or machine.id}:{directory}"


async def uncopied_checkpoints(
    row: FleetRow, runs: Sequence[Run], config: Config, backend: Any
) -> list[str]:
    """Sentences naming checkpoints that would be lost with the machine.

    Args:
        row: The machine about to be terminated.
        runs: Every recorded run on it, newest first.
        config: The effective configuration.
        backend: Its provider's backend.

    Returns:
        One sentence per problem; empty when nothing is known to be left on it.
    """
    machine = row.machine
    if not runs:
        return []
    if machine.provider is Provider.AWS:
        module = _module(Provider.AWS)
        warning = await asyncio.wait_for(
            module.unsynced_checkpoint_warning(config, backend, machine.id),
            CHECK_TIMEOUT_SECONDS,
        )
        return [warning] if warning else []
    run = runs[0]
    lister, label = checkpoint_lister(row, run, config, backend)
    if lister is None:
        return [f"run {run.id} keeps checkpoints in {run.checkpoint_dir}, not checked ({label})"]
    entries = await asyncio.wait_for(lister(), CHECK_TIMEOUT_SECONDS)
    if not entries:
        return []
    newest = max(entries, key=lambda e: getattr(e, "modified", 0.0))
    return [
        f"{len(entries)} checkpoint(s) of run {run.id} in {run.checkpoint_dir} on the pod, "
        f"newest {newest.name}; copy them off first (`runctl runpod download`) or they are lost"
    ]


async def start_remote_training(
    row: FleetRow,
    config: Config,
    backend: Any,
    script: str,
    args: Sequence[str],
    progress: Callable[[str], None],
) -> Run:
    """Sync the current folder to the machine and start `script` there, recorded as a run.

    Returns:
        The recorded run.
    """
    machine = row.machine
    module = _module(machine.provider)
    started = await module.start_training(
        config, backend, machine.id, script, list(args), local_dir=Path.cwd(), progress=progress
    )
    run: Run = started.run
    return run
