"""What the panes and actions use for runs on pods and instances, per provider.

The provider modules (`core/runpod_training.py`, `core/aws_training.py`) know where a remote
run's log and checkpoints are and how to start one; this module picks the right one for a
row and turns their failures into a sentence for the pane. Each is imported when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import FleetRow
from runctl_tui.core.models import Provider, Run
from runctl_tui.core.secrets import scrub

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
