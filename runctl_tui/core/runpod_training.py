"""Training on a RunPod pod over SSH: sync, start detached, follow, checkpoints, download.

`start_training` waits until the pod runs and its sshd answers, syncs the project with
`SshSession.sync_project` (rsync over SSH when both ends have it, else SFTP; `.gitignore`
honoured; only changed files), starts the script detached with `start_remote_run` (arguments
`shlex.quote`d, `uv run` when the pod has uv) and records the run in the run registry with
backend `runpod`. Everything about a run that is needed later (log path, pid, checkpoint dir)
is in the registry's `Run`, so any process can follow, refresh or stop it.
"""

from __future__ import annotations

import asyncio
import posixpath
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl_tui.core.aio import wait_for
from runctl_tui.core.backends.runpod import RunPodBackend
from runctl_tui.core.checkpoints import CheckpointEntry, classify_remote
from runctl_tui.core.config import Config
from runctl_tui.core.errors import BackendError, NotFoundError, RunctlError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.logsource import LogChunk
from runctl_tui.core.models import Machine, MachineState, Provider, Run, RunStatus, SshEndpoint
from runctl_tui.core.runs import RunRegistry, new_run_id

if TYPE_CHECKING:
    from runctl_tui.core.remote_log import RemoteFileLogSource
    from runctl_tui.core.remote_runs import RemoteRunInfo
    from runctl_tui.core.ssh import ProgressCallback, SyncReport

log = get_logger("runpod.training")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingStarted:
    """A run started on a pod."""

    run: Run
    machine: Machine
    sync: SyncReport


def ssh_endpoint(machine: Machine) -> SshEndpoint:
    """The pod's direct SSH endpoint.

    Raises:
        BackendError: The pod offers no SSH, or only RunPod's proxy (no exec, SFTP or rsync).
    """
    if machine.ssh is None:
        raise BackendError(
            f"pod {machine.id} has no SSH endpoint while {machine.raw_state}; it needs to be "
            "RUNNING with 22/tcp exposed (runctl creates pods that way)."
        )
    if machine.ssh.interactive_only:
        raise BackendError(
            f"pod {machine.id} is only reachable through RunPod's SSH proxy, which gives an "
            "interactive shell but no commands, SFTP or rsync; create the pod with 22/tcp "
            "exposed (`runctl runpod create` does) to train on it."
        )
    return machine.ssh


async def ready_pod(
    backend: RunPodBackend,
    pod: str,
    *,
    timeout: float = 900.0,
    poll_seconds: float = 3.0,
    progress: Progress | None = None,
) -> Machine:
    """The pod named `pod` (id or name), once it is RUNNING and its sshd answers.

    A pod that is still provisioning or starting is waited for, each state reported to
    `progress`; a stopped pod is an error that says how to start it.
    """
    machine = await backend.resolve(pod)
    if machine.state in (MachineState.STOPPED, MachineState.TERMINATED):
        raise RunctlError(
            f"pod {machine.id} ({machine.name}) is {machine.raw_state}; start it with "
            f"`runctl runpod start {machine.id}` first."
        )

    def report(current: Machine, ssh_ready: bool) -> None:
        if progress is not None:
            ready = " (SSH answers)" if ssh_ready else ""
            progress(f"pod {current.id}: {current.raw_state}{ready}")

    return await backend.wait_until_ready(
        machine.id, timeout=timeout, poll_seconds=poll_seconds, on_change=report
    )


async def start_training(
    config: Config,
    backend: RunPodBackend,
    pod: str,
    script: str,
    args: Sequence[str],
    *,
    local_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    registry: RunRegistry | None = None,
    wait_timeout: float = 900.0,
    poll_seconds: float = 3.0,
    allow_concurrent: bool = False,
) -> TrainingStarted:
    """Run `script args...` on a pod, detached, and record the run.

    Args:
        config: Effective configuration (`[runpod] remote_dir`, `[local] checkpoint_dir`, uv).
        backend: The RunPod backend.
        pod: Pod id or name.
        script: Script path relative to the project directory.
        args: Arguments for the script, passed verbatim (each shell-quoted on the pod).
        local_dir: The project to sync (default: the current directory).
        env: Extra environment variables for the script.
        progress: Called with a short line at each step.
        registry: The run registry (default: the user's).
        wait_timeout: Seconds to wait for the pod to run and SSH to answer.
        poll_seconds: Seconds between pod polls while waiting.
        allow_concurrent: Start even when a recorded run is still running on the pod (two
            trainings would share its GPU and may write the same checkpoint folder).

    Returns:
        The recorded run, the pod, and what the sync sent.

    Raises:
        RunctlError: The pod is stopped or unreachable, already runs a run, the script is
            missing, SSH failed.
    """
    from runctl_tui.core.remote_runs import start_remote_run
    from runctl_tui.core.ssh import SshSession

    say = progress or (lambda _line: None)
    registry = registry or RunRegistry()
    project = (local_dir or Path.cwd()).resolve()
    if not (project / script).is_file():
        raise NotFoundError(f"script {script} not found in {project}")
    machine = await ready_pod(
        backend, pod, timeout=wait_timeout, poll_seconds=poll_seconds, progress=say
    )
    if not allow_concurrent:
        active = await active_runs_on(backend, machine.id, registry)
        if active:
            raise RunctlError(
                f"pod {machine.name or machine.id} is already running run {active[0].id}; wait "
                f"for it, stop it (runctl runpod stop-run {active[0].id}), or pass "
                "--allow-concurrent"
            )
    endpoint = ssh_endpoint(machine)
    run_id = new_run_id()
    say(f"connecting to {endpoint.user}@{endpoint.host}:{endpoint.port}")
    async with await SshSession.connect(endpoint) as session:
        remote_dir = await session.resolve_path(config.runpod.remote_dir)
        say(f"syncing {project} to {remote_dir}")
        report = await session.sync_project(project, remote_dir)
        say(f"synced {report.files_sent} file(s), {report.bytes_sent} bytes by {report.method}")
        checkpoint_dir = posixpath.join(remote_dir, config.local.checkpoint_dir)
        run_env = {"RUNCTL_CHECKPOINT_DIR": checkpoint_dir, **dict(env or {})}
        say(f"starting {script} on pod {machine.id}")
        info = await start_remote_run(
            session,
            remote_dir=remote_dir,
            script=script,
            args=list(args),
            env=run_env,
            run_id=run_id,
            use_uv=config.local.use_uv,
        )
    run = Run(
        id=run_id,
        backend=Provider.RUNPOD,
        machine=machine.id,
        script=script,
        args=tuple(args),
        cwd=remote_dir,
        status=RunStatus.RUNNING,
        started=time.time(),
        log_path=info.log_path,
        checkpoint_dir=checkpoint_dir,
        interpreter=info.interpreter,
        pid=info.pid,
        note=f"pod {machine.name}" if machine.name else "",
    )
    await asyncio.to_thread(registry.add, run)
    log.info("runpod run %s started on %s (pid %s)", run_id, machine.id, info.pid)
    return TrainingStarted(run, machine, report)


def remote_info(run: Run) -> RemoteRunInfo:
    """The `RemoteRunInfo` of a recorded pod run (its files sit beside `train.log`)."""
    from runctl_tui.core.remote_runs import RemoteRunInfo

    if run.pid is None:
        raise RunctlError(f"run {run.id} has no recorded pid; it cannot be inspected.")
    run_dir = posixpath.dirname(run.log_path)
    return RemoteRunInfo(
        pid=run.pid,
        log_path=run.log_path,
        exit_code_path=posixpath.join(run_dir, "exit_code"),
        pid_path=posixpath.join(run_dir, "pid"),
        interpreter=run.interpreter,
    )


def latest_run(pod_id: str, registry: RunRegistry | None = None) -> Run | None:
    """The newest run recorded on a pod."""
    return (registry or RunRegistry()).latest_for_machine(Provider.RUNPOD, pod_id)


async def active_runs_on(backend: RunPodBackend, pod_id: str, registry: RunRegistry) -> list[Run]:
    """The runs recorded as running on a pod that the pod says still run (asked over SSH)."""
    runs = await asyncio.to_thread(registry.list, Provider.RUNPOD, status=RunStatus.RUNNING)
    active = []
    for run in runs:
        if run.machine == pod_id:
            refreshed, _ = await refresh_run(backend, run, registry)
            if refreshed.status is RunStatus.RUNNING:
                active.append(refreshed)
    return active


async def refresh_run(
    backend: RunPodBackend, run: Run, registry: RunRegistry | None = None
) -> tuple[Run, Machine | None]:
    """Ask the pod how a running run is doing and record a change.

    Returns:
        The (possibly updated) run and the pod (None when it no longer exists).
    """
    from runctl_tui.core.remote_runs import remote_run_status
    from runctl_tui.core.ssh import SshSession

    registry = registry or RunRegistry()
    try:
        machine: Machine | None = await backend.get(run.machine)
    except NotFoundError:
        machine = None
    if run.status.is_final:
        return run, machine
    if machine is None or machine.state in (MachineState.TERMINATED, MachineState.STOPPED):
        where = "was terminated" if machine is None else f"is {machine.raw_state}"
        updated = await asyncio.to_thread(
            registry.update,
            run.id,
            status=RunStatus.INTERRUPTED,
            ended=time.time(),
            note=_join(run.note, f"pod {where}"),
        )
        return updated, machine
    if machine.state is not MachineState.RUNNING:
        return run, machine
    async with await SshSession.connect(ssh_endpoint(machine)) as session:
        status, code = await remote_run_status(session, remote_info(run))
    if status is RunStatus.RUNNING:
        return run, machine
    updated = await asyncio.to_thread(
        registry.update, run.id, status=status, exit_code=code, ended=time.time()
    )
    return updated, machine


async def stop_training(
    backend: RunPodBackend, run: Run, registry: RunRegistry | None = None
) -> Run:
    """Stop a run on its pod (SIGINT, SIGTERM, SIGKILL to its process group) and record it."""
    from runctl_tui.core.remote_runs import stop_remote_run
    from runctl_tui.core.ssh import SshSession

    registry = registry or RunRegistry()
    machine = await backend.get(run.machine)
    async with await SshSession.connect(ssh_endpoint(machine)) as session:
        status, code = await stop_remote_run(session, remote_info(run))
    return await asyncio.to_thread(
        registry.update, run.id, status=status, exit_code=code, ended=time.time()
    )


def log_source(machine: Machine, run: Run) -> RemoteFileLogSource:
    """The run's `train.log` on the pod, followed over SSH (`tail -F`, reconnecting)."""
    from runctl_tui.core.remote_log import RemoteFileLogSource

    return RemoteFileLogSource(ssh_endpoint(machine), run.log_path)


async def follow_run(
    backend: RunPodBackend,
    run: Run,
    on_chunk: Callable[[LogChunk], None],
    *,
    initial_lines: int = 20,
    poll_seconds: float = 5.0,
    registry: RunRegistry | None = None,
    drain_timeout: float = 15.0,
) -> Run:
    """Follow a run's log until the run ends; returns the run in its final state.

    The log is followed over SSH while the run's status is polled every `poll_seconds`. Once
    the run has ended, the follower is given until it has read the whole log file (its size
    on the pod, up to `drain_timeout` seconds) so the last lines are never cut off.

    Args:
        backend: The RunPod backend.
        run: A recorded pod run.
        on_chunk: Called with each chunk of the log (lines, partial line, notices).
        initial_lines: Lines of the existing log shown first.
        poll_seconds: Seconds between status checks.
        registry: The run registry (default: the user's).
        drain_timeout: Longest wait for the last lines after the run ended.
    """
    from runctl_tui.core.ssh import SshSession

    machine = await backend.get(run.machine)
    source = log_source(machine, run)
    read = 0
    progressed = asyncio.Event()

    async def pump() -> None:
        nonlocal read
        async for chunk in source.follow(initial_lines=initial_lines):
            on_chunk(chunk)
            if chunk.size is not None:
                read = chunk.size
                progressed.set()

    task = asyncio.create_task(pump())
    try:
        while True:
            if task.done():
                task.result()  # A follower that gave up raises its error here.
            run, current = await refresh_run(backend, run, registry)
            if run.status.is_final:
                break
            await asyncio.sleep(poll_seconds)
        if current is not None and current.state is MachineState.RUNNING:
            async with await SshSession.connect(ssh_endpoint(current)) as session:
                result = await session.run(f"wc -c < {shlex.quote(run.log_path)}", timeout=60)
            size = int(result.stdout.strip() or 0) if result.ok else 0
            deadline = time.monotonic() + drain_timeout
            while read < size and not task.done():
                progressed.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await wait_for(progressed.wait(), remaining)
                except asyncio.TimeoutError:
                    break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return run


def checkpoint_root(config: Config, pod_id: str, registry: RunRegistry | None = None) -> str:
    """Where a pod's checkpoints are: its newest run's checkpoint dir, else the default one."""
    run = latest_run(pod_id, registry)
    if run is not None:
        return run.checkpoint_dir
    return posixpath.join(config.runpod.remote_dir, config.local.checkpoint_dir)


async def list_pod_checkpoints(machine: Machine, directory: str) -> list[CheckpointEntry]:
    """The checkpoints under `directory` on the pod, newest first, from one remote listing."""
    from runctl_tui.core.ssh import SshSession

    async with await SshSession.connect(ssh_endpoint(machine)) as session:
        files = await session.list_files(directory)
    # `RemoteFileLike` declares settable attributes, which a frozen `RemoteFile` cannot match
    # for mypy although it has every field.
    listing: list[Any] = list(files)
    return classify_remote(listing, directory)


async def download_from_pod(
    machine: Machine,
    remote_path: str,
    destination: Path,
    *,
    progress: ProgressCallback | None = None,
) -> int:
    """Download a file or directory (a checkpoint) from the pod; returns the bytes copied.

    The download is written to `<name>.part` files renamed when whole, so an interrupted
    download never looks complete.
    """
    from runctl_tui.core.ssh import SshSession

    async with await SshSession.connect(ssh_endpoint(machine)) as session:
        return await session.download(remote_path, destination, progress=progress)


def _join(note: str, extra: str) -> str:
    return f"{note}; {extra}" if note else extra
