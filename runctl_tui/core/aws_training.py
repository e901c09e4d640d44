"""Training on EC2 instances over SSH, with S3 data and checkpoints and spot interruptions.

`start_training` syncs the project to the instance, ships the agents (`runctl_tui/agent/`),
downloads `--data-s3` there before the script starts, starts the script detached with the SSH
helper's `start_remote_run`, then starts the agents detached beside it: `s3_sync.py
upload-watch` (checkpoints to `--output-s3` as they appear, final outputs at the end) and, on
spot instances, `spot_watcher.py` (IMDSv2 interruption notices). The agents run on the
instance, so they keep working after the CLI has exited. The run is recorded in the run
registry with backend `aws`; what only AWS runs need (run folder, S3 URIs, the instance's
type) is kept beside the registry in `state_dir/aws_runs/<run id>.json`.

`refresh_run` reconciles a run with the instance (exit status, the spot watcher's marker, an
instance AWS took back), and `resume_run` (opt-in `[aws] auto_resume`) launches a replacement
of the same type and resumes the same logical run from its newest checkpoint in S3.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import posixpath
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runctl_tui.agent import AGENT_FILES, agent_dir
from runctl_tui.core import paths
from runctl_tui.core.backends.aws import (
    TAG_OUTPUT_S3,
    TAG_RESUMED_FROM,
    TAG_RUN_ID,
    AwsBackend,
)
from runctl_tui.core.config import Config
from runctl_tui.core.errors import BackendError, NotFoundError, RunctlError
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.logsource import LogSource
from runctl_tui.core.models import CreateSpec, Machine, MachineState, Provider, Run, RunStatus
from runctl_tui.core.runs import RunRegistry, new_run_id

log = get_logger("aws.training")

Progress = Callable[[str], None]

MARKER = "spot_interruption.json"
S3_STATE = "s3_sync.json"
_AGENT_SUBDIR = ".runctl/agent"
_ENV_SUBDIR = ".runctl/env"


@dataclass
class AwsRunInfo:
    """What an AWS run needs beyond the registry's `Run` (kept in `state_dir/aws_runs/`)."""

    run_id: str
    instance_id: str
    instance_type: str
    spot: bool
    local_dir: str
    remote_dir: str
    run_dir: str
    log_path: str
    exit_code_path: str
    pid_path: str
    checkpoint_dir: str
    script: str
    args: list[str]
    interpreter: str = ""
    pid: int | None = None
    data_s3: str = ""
    output_s3: str = ""
    env_file: str = ""
    agents: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    """Earlier instances of this logical run: `{instance_id, ended, reason, resumed_from}`."""
    resumed_from: str = ""
    """The S3 checkpoint the current attempt resumed from, if any."""

    @staticmethod
    def path_for(run_id: str) -> Path:
        """Where the record of `run_id` lives."""
        return paths.state_dir() / "aws_runs" / f"{run_id}.json"

    def save(self) -> None:
        """Write the record atomically (private to the user)."""
        path = self.path_for(self.run_id)
        paths.ensure_dir(path.parent)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def load(cls, run_id: str) -> AwsRunInfo:
        """Read the record of `run_id`.

        Raises:
            NotFoundError: runctl has no AWS record of that run.
        """
        path = cls.path_for(run_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(f"run {run_id} is not an AWS run started by runctl") from None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TrainingStarted:
    """What `start_training` did."""

    run: Run
    info: AwsRunInfo
    sync_summary: str


def _remote_runs() -> Any:
    from runctl_tui.core import remote_runs

    return remote_runs


def _ssh() -> Any:
    from runctl_tui.core import ssh

    return ssh


def _q(path: str) -> str:
    return shlex.quote(path)


async def _machine_for_training(backend: AwsBackend, instance_id: str) -> Machine:
    machine = await backend.get_machine(instance_id)
    if machine.state is not MachineState.RUNNING:
        raise RunctlError(
            f"instance {instance_id} is {machine.raw_state or machine.state.value}, not running; "
            f"start it first (runctl aws start {instance_id})"
        )
    if machine.ssh is None:
        raise RunctlError(f"instance {instance_id} has no address to SSH to")
    return machine


async def _active_runs_on(
    config: Config, backend: AwsBackend, instance_id: str, registry: RunRegistry
) -> list[Run]:
    runs = await asyncio.to_thread(registry.list, Provider.AWS)
    active = []
    for run in runs:
        if run.machine == instance_id and run.status is RunStatus.RUNNING:
            refreshed = await refresh_run(config, backend, run.id, registry=registry)
            if refreshed.status is RunStatus.RUNNING:
                active.append(refreshed)
    return active


async def _write_env_file(session: Any, remote_path: str, env: dict[str, str]) -> None:
    """Write KEY=VALUE lines to a 0600 file on the instance, sent on stdin (never argv)."""
    text = "".join(f"{key}={value}\n" for key, value in env.items())
    await session.run(
        f"umask 077 && mkdir -p {_q(posixpath.dirname(remote_path))} && "
        f"cat > {_q(remote_path)} && chmod 600 {_q(remote_path)}",
        timeout=60,
        check=True,
        input=text,
    )


async def _check_agent_python(session: Any, python: str) -> None:
    result = await session.run(f"{_q(python)} -c 'import boto3'", timeout=60)
    if result.exit_status != 0:
        raise BackendError(
            f"the instance's {python} cannot import boto3, which the S3 and spot agents need; "
            f"install it there (`{python} -m pip install boto3`) or point [aws] agent_python "
            "at a Python that has it"
        )


def _check_bucket(backend: AwsBackend, uri: str) -> str:
    """Fail early when the bucket of `uri` does not exist; return a warning if unsure.

    The agents use the instance's credentials, which may reach a bucket ours cannot, so only
    a bucket that does not exist at all stops the run.
    """
    bucket = uri[len("s3://") :].split("/", 1)[0]
    try:
        backend.clients.s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise NotFoundError(
                f"S3 bucket {bucket} (in {uri}) does not exist; create it or fix the URI"
            ) from None
        return f"could not check bucket {bucket} from here ({code or type(exc).__name__})"
    return ""


def _detached(command: str, log_file: str) -> str:
    """A shell line that starts `command` in its own session, surviving the SSH channel."""
    return f"setsid nohup {command} > {_q(log_file)} 2>&1 < /dev/null & echo $!"


async def start_training(
    config: Config,
    backend: AwsBackend,
    instance_id: str,
    script: str,
    args: Sequence[str],
    *,
    data_s3: str = "",
    output_s3: str = "",
    allow_concurrent: bool = False,
    local_dir: Path | None = None,
    run_id: str | None = None,
    resume_checkpoint: str = "",
    progress: Progress | None = None,
    registry: RunRegistry | None = None,
) -> TrainingStarted:
    """Start `script args...` on an instance over SSH and record the run.

    Args:
        config: Effective configuration (`[aws]` for user, key, remote dir, agent Python).
        backend: The AWS backend (the same clients and region as everything else).
        instance_id: A running instance.
        script: Script path relative to the project directory.
        args: Arguments for the script, passed verbatim (each shell-quoted).
        data_s3: `s3://...` to download into `<remote_dir>/data` before the script starts.
        output_s3: `s3://...` to upload checkpoints to as they appear, and final outputs.
        allow_concurrent: Start even when another run is active on the instance.
        local_dir: The project to sync (default: the current directory).
        run_id: Reuse this id (a resumed run keeps its logical id); None: a new id.
        resume_checkpoint: `s3://` checkpoint to download and resume from (auto-resume).
        progress: Called with a short line at each step.
        registry: The run registry (default: the user's).

    Returns:
        The recorded run and its AWS record.

    Raises:
        RunctlError: The instance is not running, already runs something, SSH or S3 failed.
    """
    say = progress or (lambda _line: None)
    registry = registry or RunRegistry()
    aws = config.aws
    output_s3 = output_s3 or aws.output_s3
    for uri in (data_s3, output_s3):
        if uri and not uri.startswith("s3://"):
            raise RunctlError(f"{uri!r} is not an S3 URI; write it as s3://bucket/prefix")
    machine = await _machine_for_training(backend, instance_id)
    assert machine.ssh is not None
    for uri in (data_s3, output_s3):
        if uri:
            note = await asyncio.to_thread(_check_bucket, backend, uri)
            if note:
                say(note)
    if not allow_concurrent:
        active = await _active_runs_on(config, backend, instance_id, registry)
        active = [r for r in active if r.id != run_id]
        if active:
            raise RunctlError(
                f"instance {instance_id} is already running run {active[0].id}; wait for it, "
                f"stop it (runctl aws stop-run {active[0].id}), or pass --allow-concurrent"
            )
    project = (local_dir or Path.cwd()).resolve()
    if not (project / script).is_file():
        raise NotFoundError(f"script {script} not found in {project}")
    run_id = run_id or new_run_id()
    previous = _load_or_none(run_id)
    # A resumed attempt gets its own folder on the instance (its disk may be the old one's).
    attempt_id = run_id if previous is None else f"{run_id}-r{len(previous.history)}"
    ssh_mod = _ssh()
    remote_runs = _remote_runs()
    say(f"connecting to {machine.ssh.user}@{machine.ssh.host}:{machine.ssh.port}")
    async with await ssh_mod.SshSession.connect(machine.ssh) as session:
        remote_dir = await session.resolve_path(aws.remote_dir)
        say(f"syncing {project} to {remote_dir}")
        report = await session.sync_project(project, remote_dir)
        sync_summary = f"{report.files_sent} file(s), {report.bytes_sent} bytes by {report.method}"
        say(f"synced {sync_summary}")
        agents = posixpath.join(remote_dir, _AGENT_SUBDIR)
        for name in AGENT_FILES:
            await session.upload(agent_dir() / name, posixpath.join(agents, name))
        checkpoint_dir = posixpath.join(remote_dir, config.local.checkpoint_dir)
        env_file = posixpath.join(remote_dir, _ENV_SUBDIR, f"{attempt_id}.env")
        python = aws.agent_python
        needs_agents = bool(data_s3 or output_s3 or resume_checkpoint or machine.spot)
        if needs_agents:
            agent_env = await asyncio.to_thread(
                backend.clients.agent_environment, forward_credentials=aws.forward_credentials
            )
            if os.environ.get("RUNCTL_IMDS_URL"):
                # Development and tests: a metadata server other than the link-local one.
                agent_env["RUNCTL_IMDS_URL"] = os.environ["RUNCTL_IMDS_URL"]
            await _write_env_file(session, env_file, agent_env)
        if data_s3 or output_s3 or resume_checkpoint:
            await _check_agent_python(session, python)
        env = {
            "RUNCTL_RUN_ID": run_id,
            "RUNCTL_CHECKPOINT_DIR": checkpoint_dir,
        }
        if output_s3:
            env["RUNCTL_OUTPUT_S3"] = output_s3
        if data_s3:
            data_dir = posixpath.join(remote_dir, "data")
            env["RUNCTL_DATA_DIR"] = data_dir
            say(f"downloading {data_s3} to {data_dir} on the instance")
            await session.run(
                f"{_q(python)} {_q(posixpath.join(agents, 's3_sync.py'))} --env-file "
                f"{_q(env_file)} download {_q(data_s3)} {_q(data_dir)}",
                check=True,
            )
        run_args = list(args)
        if resume_checkpoint:
            # Outside the checkpoint dir, so the upload agent does not send it back to S3.
            is_dir = resume_checkpoint.endswith("/")
            local_ckpt = posixpath.join(
                remote_dir,
                ".runctl/resume",
                run_id,
                posixpath.basename(resume_checkpoint.rstrip("/")),
            )
            say(f"downloading {resume_checkpoint} to {local_ckpt}")
            target = local_ckpt if is_dir else posixpath.dirname(local_ckpt)
            await session.run(
                f"{_q(python)} {_q(posixpath.join(agents, 's3_sync.py'))} --env-file "
                f"{_q(env_file)} download {_q(resume_checkpoint)} {_q(target)}",
                check=True,
            )
            # Split the template before filling it in, so a path with spaces stays one word.
            run_args += [
                word.format(path=local_ckpt) for word in shlex.split(config.local.resume_flag)
            ]
        say(f"starting {script} on {instance_id}")
        started = await remote_runs.start_remote_run(
            session,
            remote_dir=remote_dir,
            script=script,
            args=run_args,
            env=env,
            run_id=attempt_id,
            use_uv=config.local.use_uv,
        )
        run_dir = posixpath.dirname(started.log_path)
        agent_pids = []
        if output_s3:
            line = (
                f"{_q(python)} {_q(posixpath.join(agents, 's3_sync.py'))} --env-file "
                f"{_q(env_file)} upload-watch --pid {int(started.pid)} --dir {_q(checkpoint_dir)} "
                f"--output-s3 {_q(output_s3)} --run-dir {_q(run_dir)} "
                f"--interval {float(aws.agent_poll_seconds)}"
            )
            result = await session.run(
                _detached(line, posixpath.join(run_dir, "s3_sync.log")), timeout=30, check=True
            )
            agent_pids.append(f"s3_sync:{result.stdout.strip()}")
        if machine.spot:
            line = (
                f"{_q(python)} {_q(posixpath.join(agents, 'spot_watcher.py'))} --env-file "
                f"{_q(env_file)} --pid {int(started.pid)} --run-dir {_q(run_dir)} "
                f"--checkpoint-dir {_q(checkpoint_dir)} --interval {float(aws.agent_poll_seconds)}"
                + (f" --output-s3 {_q(output_s3)}" if output_s3 else "")
            )
            result = await session.run(
                _detached(line, posixpath.join(run_dir, "spot_watcher.log")),
                timeout=30,
                check=True,
            )
            agent_pids.append(f"spot_watcher:{result.stdout.strip()}")
    info = AwsRunInfo(
        run_id=run_id,
        instance_id=instance_id,
        instance_type=str(machine.tags.get("instance_type", "")),
        spot=machine.spot,
        local_dir=str(project),
        remote_dir=remote_dir,
        run_dir=run_dir,
        log_path=started.log_path,
        exit_code_path=started.exit_code_path,
        pid_path=started.pid_path,
        checkpoint_dir=checkpoint_dir,
        script=script,
        args=list(args),
        interpreter=started.interpreter,
        pid=int(started.pid),
        data_s3=data_s3,
        output_s3=output_s3,
        env_file=env_file if needs_agents else "",
        agents=agent_pids,
        resumed_from=resume_checkpoint,
    )
    if previous is not None:
        info.history = previous.history
        info.local_dir = previous.local_dir or info.local_dir
    await asyncio.to_thread(info.save)
    run = Run(
        id=run_id,
        backend=Provider.AWS,
        machine=instance_id,
        script=script,
        args=tuple(args),
        cwd=remote_dir,
        status=RunStatus.RUNNING,
        started=time.time(),
        log_path=started.log_path,
        checkpoint_dir=checkpoint_dir,
        interpreter=started.interpreter,
        pid=int(started.pid),
        note=_note(info),
    )
    if previous is None:
        await asyncio.to_thread(registry.add, run)
    else:
        run = await asyncio.to_thread(
            registry.update,
            run_id,
            machine=instance_id,
            status=RunStatus.RUNNING,
            log_path=run.log_path,
            checkpoint_dir=checkpoint_dir,
            interpreter=run.interpreter,
            pid=run.pid,
            ended=None,
            exit_code=None,
            note=run.note,
        )
    tags = {TAG_RUN_ID: run_id}
    if output_s3:
        tags[TAG_OUTPUT_S3] = output_s3[:255]
    if resume_checkpoint and info.history:
        tags[TAG_RESUMED_FROM] = str(info.history[-1].get("instance_id", ""))
    await backend.tag(instance_id, tags)
    log.info("aws run %s started on %s (pid %s)", run_id, instance_id, started.pid)
    return TrainingStarted(run, info, sync_summary)


def _load_or_none(run_id: str) -> AwsRunInfo | None:
    try:
        return AwsRunInfo.load(run_id)
    except NotFoundError:
        return None


def _note(info: AwsRunInfo) -> str:
    parts = []
    if info.output_s3:
        parts.append(f"output {info.output_s3}")
    if info.resumed_from:
        previous = info.history[-1]["instance_id"] if info.history else "?"
        parts.append(
            f"resumed on {info.instance_id} from {info.resumed_from} after spot interruption "
            f"of {previous}"
        )
    return "; ".join(parts)


@dataclass(frozen=True)
class RunState:
    """A run as the instance and AWS see it now."""

    run: Run
    machine: Machine | None
    marker: dict[str, Any] | None
    """The spot watcher's marker, if it wrote one."""
    uploads: dict[str, Any] | None
    """The S3 agent's state (`uploaded` files with their keys), if any."""


async def _remote_json(session: Any, path: str) -> dict[str, Any] | None:
    result = await session.run(f"cat {_q(path)} 2>/dev/null", timeout=30)
    if result.exit_status != 0 or not result.stdout.strip():
        return None
    try:
        data = json.loads(result.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def inspect_run(
    config: Config,
    backend: AwsBackend,
    run_id: str,
    *,
    registry: RunRegistry | None = None,
) -> RunState:
    """Reconcile a run with its instance and return what is known.

    A spot-termination state reason, or the spot watcher's marker, marks the run
    `interrupted`; an exit status file marks it `succeeded`/`failed`. Changes are written to
    the registry.

    Args:
        config: Effective configuration.
        backend: The AWS backend.
        run_id: The run.
        registry: The run registry (default: the user's).
    """
    registry = registry or RunRegistry()
    run = await asyncio.to_thread(registry.get, run_id)
    info = AwsRunInfo.load(run_id)
    try:
        machine: Machine | None = await backend.get_machine(info.instance_id)
    except NotFoundError:
        machine = None
    marker: dict[str, Any] | None = None
    uploads: dict[str, Any] | None = None
    changes: dict[str, Any] = {}
    if machine is not None and machine.state is MachineState.RUNNING and machine.ssh:
        try:
            async with await _ssh().SshSession.connect(machine.ssh, timeout=15) as session:
                marker = await _remote_json(session, posixpath.join(info.run_dir, MARKER))
                uploads = await _remote_json(session, posixpath.join(info.run_dir, S3_STATE))
                status, code = await _remote_runs().remote_run_status(session, _remote_info(info))
        except RunctlError as exc:
            log.info("cannot reach %s for run %s: %s", info.instance_id, run_id, exc)
        else:
            if run.status is RunStatus.RUNNING:
                if marker is not None and marker.get("status") == "done":
                    # Only once the watcher is done: before that the newest checkpoint may
                    # not be in S3 yet, and a resume would start from an older one.
                    changes = _interrupted_changes(run, marker)
                elif status is not RunStatus.RUNNING:
                    changes = {"status": status, "exit_code": code, "ended": time.time()}
                    if status is RunStatus.LOST:
                        changes["note"] = _join(run.note, "process gone without an exit status")
    elif run.status is RunStatus.RUNNING:
        if machine is not None and machine.state is MachineState.INTERRUPTED:
            changes = {
                "status": RunStatus.INTERRUPTED,
                "ended": time.time(),
                "note": _join(run.note, f"spot instance {info.instance_id} taken back by AWS"),
            }
        elif machine is None or machine.state in (
            MachineState.TERMINATED,
            MachineState.STOPPED,
            MachineState.TERMINATING,
        ):
            word = machine.raw_state if machine else "gone"
            changes = {
                "status": RunStatus.LOST,
                "ended": time.time(),
                "note": _join(run.note, f"instance {info.instance_id} {word}"),
            }
    if changes:
        run = await asyncio.to_thread(registry.update, run_id, **changes)
        log.info("aws run %s is now %s", run_id, run.status.value)
    return RunState(run, machine, marker, uploads)


def _join(note: str, extra: str) -> str:
    return f"{note}; {extra}" if note else extra


def _interrupted_changes(run: Run, marker: dict[str, Any]) -> dict[str, Any]:
    uploaded = marker.get("s3_keys") or []
    detail = f"spot interruption notice ({marker.get('action')} at {marker.get('time')}); " + (
        f"newest checkpoint uploaded to {', '.join(uploaded)}"
        if marker.get("uploaded")
        else f"checkpoint not uploaded: {marker.get('upload_error', marker.get('status'))}"
    )
    return {"status": RunStatus.INTERRUPTED, "ended": time.time(), "note": _join(run.note, detail)}


async def refresh_run(
    config: Config, backend: AwsBackend, run_id: str, *, registry: RunRegistry | None = None
) -> Run:
    """`inspect_run` returning only the (updated) run."""
    return (await inspect_run(config, backend, run_id, registry=registry)).run


async def stop_run(
    config: Config, backend: AwsBackend, run_id: str, *, registry: RunRegistry | None = None
) -> Run:
    """Stop a run on its instance (the SSH helper's graceful stop) and record it."""
    registry = registry or RunRegistry()
    info = AwsRunInfo.load(run_id)
    machine = await _machine_for_training(backend, info.instance_id)
    assert machine.ssh is not None
    remote_runs = _remote_runs()
    async with await _ssh().SshSession.connect(machine.ssh) as session:
        status, code = await remote_runs.stop_remote_run(session, _remote_info(info))
    return await asyncio.to_thread(
        registry.update, run_id, status=status, exit_code=code, ended=time.time()
    )


def _remote_info(info: AwsRunInfo) -> Any:
    return _remote_runs().RemoteRunInfo(
        pid=int(info.pid or 0),
        log_path=info.log_path,
        exit_code_path=info.exit_code_path,
        pid_path=info.pid_path,
        interpreter=info.interpreter,
    )


def log_source(config: Config, machine: Machine, run: Run) -> LogSource:
    """The run's log on the instance as a `LogSource` (remote `tail -F` over SSH)."""
    if machine.ssh is None:
        raise RunctlError(f"instance {machine.id} has no address to SSH to")
    source: LogSource = _remote_log_source_class()(machine.ssh, run.log_path)
    return source


def _remote_log_source_class() -> Any:
    from runctl_tui.core.remote_log import RemoteFileLogSource

    return RemoteFileLogSource


async def s3_checkpoints(backend: AwsBackend, output_s3: str) -> list[Any]:
    """Checkpoints the run uploaded (`<output_s3>/checkpoints/`), newest first."""
    from runctl_tui.core.checkpoints import list_s3_checkpoints

    uri = output_s3.rstrip("/") + "/checkpoints"
    return await asyncio.to_thread(list_s3_checkpoints, uri, backend.clients.s3)


async def unsynced_checkpoint_warning(
    config: Config,
    backend: AwsBackend,
    instance_id: str,
    *,
    registry: RunRegistry | None = None,
) -> str | None:
    """A warning when terminating `instance_id` would lose its run's newest checkpoint.

    Args:
        config: Effective configuration.
        backend: The AWS backend.
        instance_id: The instance about to be terminated.
        registry: The run registry (default: the user's).

    Returns:
        None when there is nothing to lose (no run, or its newest checkpoint is in S3); else
        a sentence saying which checkpoint is only on the instance, or that it could not be
        checked.
    """
    from runctl_tui.core.checkpoints import classify_remote

    registry = registry or RunRegistry()
    run = await asyncio.to_thread(registry.latest_for_machine, Provider.AWS, instance_id)
    if run is None:
        return None
    info = _load_or_none(run.id)
    if info is None:
        return None
    try:
        machine = await backend.get_machine(instance_id)
    except NotFoundError:
        return None
    if machine.state is not MachineState.RUNNING or machine.ssh is None:
        return None
    try:
        async with await _ssh().SshSession.connect(machine.ssh, timeout=15) as session:
            try:
                files = await session.list_files(info.checkpoint_dir)
            except NotFoundError:
                return None
    except RunctlError as exc:
        return f"could not check run {run.id}'s checkpoints on {instance_id} ({exc})"
    local = classify_remote(files, info.checkpoint_dir)
    if not local:
        return None
    newest = max(local, key=lambda e: e.modified)
    if not info.output_s3:
        return (
            f"run {run.id} was started without --output-s3: its newest checkpoint "
            f"{newest.name} exists only on {instance_id} and is lost when it terminates"
        )
    try:
        remote = await s3_checkpoints(backend, info.output_s3)
    except RunctlError as exc:
        return f"could not list {info.output_s3} to check run {run.id}'s checkpoints ({exc})"
    in_s3 = {e.name: e.size_bytes for e in remote}
    if in_s3.get(newest.name) != newest.size_bytes:
        return (
            f"run {run.id}'s newest checkpoint {newest.name} ({newest.size_bytes} bytes) is not "
            f"in {info.output_s3} yet; terminating {instance_id} now loses it"
        )
    return None


async def resume_run(
    config: Config,
    backend: AwsBackend,
    run_id: str,
    *,
    progress: Progress | None = None,
    registry: RunRegistry | None = None,
) -> TrainingStarted:
    """Replace an interrupted spot instance and resume the same run from S3.

    Launches an instance of the same type (spot, with the configured fallback), waits for it,
    and starts the run's script again with `[local] resume_flag` pointing at the newest
    checkpoint from `<output_s3>/checkpoints/`, under the same run id; the interrupted
    instance is kept in the run's history and named in its note.

    Raises:
        RunctlError: The run is not interrupted, has no `--output-s3`, or S3 has no checkpoint.
    """
    registry = registry or RunRegistry()
    lock_path = AwsRunInfo.path_for(run_id).with_suffix(".resume.lock")
    paths.ensure_dir(lock_path.parent)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunctlError(f"run {run_id} is being resumed by another runctl process") from None
        # Under the lock, so the dashboard and a CLI never launch two replacements.
        return await _resume_locked(config, backend, run_id, progress, registry)


async def _resume_locked(
    config: Config,
    backend: AwsBackend,
    run_id: str,
    progress: Progress | None,
    registry: RunRegistry,
) -> TrainingStarted:
    say = progress or (lambda _line: None)
    run = await asyncio.to_thread(registry.get, run_id)
    info = AwsRunInfo.load(run_id)
    if run.status is not RunStatus.INTERRUPTED:
        raise RunctlError(f"run {run_id} is {run.status.value}, not interrupted; nothing to resume")
    if not info.output_s3:
        raise RunctlError(
            f"run {run_id} has no --output-s3, so there is no checkpoint to resume from"
        )
    checkpoints = await s3_checkpoints(backend, info.output_s3)
    if not checkpoints:
        raise RunctlError(f"no checkpoint of run {run_id} in {info.output_s3}/checkpoints")
    newest = max(checkpoints, key=lambda e: e.modified)
    say(f"newest checkpoint in S3: {newest.path}")
    info.history.append(
        {
            "instance_id": info.instance_id,
            "ended": time.time(),
            "reason": "spot interruption",
            "resumed_from": newest.path,
        }
    )
    await asyncio.to_thread(info.save)
    outcome = await backend.create_instance(
        CreateSpec(
            Provider.AWS,
            info.instance_type,
            name=f"runctl-{run_id}",
            spot=True,
        ),
        tags={TAG_RUN_ID: run_id, TAG_RESUMED_FROM: info.instance_id},
    )
    say(outcome.message)
    await backend.wait_until_ready(outcome.machine.id, say)
    return await start_training(
        config,
        backend,
        outcome.machine.id,
        info.script,
        info.args,
        data_s3=info.data_s3,
        output_s3=info.output_s3,
        local_dir=Path(info.local_dir) if Path(info.local_dir).is_dir() else None,
        run_id=run_id,
        resume_checkpoint=newest.path + ("/" if newest.is_dir else ""),
        progress=progress,
        registry=registry,
    )


async def reconcile_runs(
    config: Config,
    backend: AwsBackend,
    *,
    registry: RunRegistry | None = None,
    progress: Progress | None = None,
) -> list[Run]:
    """Bring every running AWS run up to date; with `[aws] auto_resume`, resume interrupted ones.

    For the dashboard's poller (the CLI's `monitor --follow` does the same for one run).

    Args:
        config: Effective configuration.
        backend: The AWS backend.
        registry: The run registry (default: the user's).
        progress: Called with a line at each step of a resume.

    Returns:
        The runs whose status changed (a resumed run as it is now: running again).
    """
    registry = registry or RunRegistry()
    changed: list[Run] = []
    for run in await asyncio.to_thread(registry.list, Provider.AWS):
        if run.status is not RunStatus.RUNNING:
            continue
        try:
            now = await refresh_run(config, backend, run.id, registry=registry)
        except NotFoundError:
            continue
        if now.status is RunStatus.RUNNING:
            continue
        if now.status is RunStatus.INTERRUPTED and config.aws.auto_resume:
            try:
                now = (
                    await resume_run(config, backend, run.id, progress=progress, registry=registry)
                ).run
            except RunctlError as exc:
                log.warning("auto-resume of %s failed: %s", run.id, exc)
                now = await asyncio.to_thread(
                    registry.update, run.id, note=_join(now.note, f"auto-resume failed: {exc}")
                )
        changed.append(now)
    return changed
