"""`runctl aws ...`: EC2 instances (list, create, stop, start, terminate, prices) and training
on them over SSH (train, monitor, resume).

Heavy imports (boto3, asyncssh) happen inside the handlers: every `runctl` call imports this
module to build the parser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from runctl_tui.cli.common import EXIT_FAILURE, EXIT_OK, Context, print_json, warn
from runctl_tui.cli.remote_common import (
    add_script_arguments,
    confirm_terminate,
    print_chunk,
    print_table,
    status,
    uptime_text,
)
from runctl_tui.core.aio import wait_for
from runctl_tui.core.errors import RunctlError
from runctl_tui.core.secrets import scrub

if TYPE_CHECKING:
    from runctl_tui.core.backends.aws import AwsBackend
    from runctl_tui.core.config import Config
    from runctl_tui.core.models import Machine, Run

ORDER = 40
T = TypeVar("T")


def register(subparsers: Any) -> None:
    """Add `aws` and its actions to the `runctl` parser."""
    aws = subparsers.add_parser("aws", help="AWS EC2 instances and training on them")
    actions = aws.add_subparsers(dest="aws_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="instances runctl created (with --all: all)")
    listing.add_argument("--all", action="store_true", help="every instance in the region")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(handler=cmd_list)

    create = actions.add_parser("create", help="launch an instance (spot or on-demand)")
    create.add_argument("type", nargs="?", metavar="TYPE", help="instance type ([aws] default)")
    create.add_argument("--spot", action="store_true", default=None, help="a spot instance")
    create.add_argument(
        "--max-price", type=float, metavar="P", help="spot cap in $/h (default: on-demand price)"
    )
    create.add_argument(
        "--fallback",
        choices=("on-demand", "never"),
        help="when spot capacity is refused (default: [aws] spot_fallback)",
    )
    create.add_argument("--ami", help="AMI id (default: [aws] ami, else newest Deep Learning AMI)")
    create.add_argument("--key-name", metavar="K", help="EC2 key pair name")
    create.add_argument(
        "--security-group",
        metavar="SG",
        action="append",
        help="security group id (repeatable)",
    )
    create.add_argument("--disk", type=int, metavar="GB", help="root volume size in GB")
    create.add_argument("--name", help="Name tag")
    create.add_argument("--wait", action="store_true", help="wait until running and SSH answers")
    create.add_argument("--json", action="store_true", help="print the machine as JSON")
    create.set_defaults(handler=cmd_create)

    train = actions.add_parser(
        "train",
        help="run a training script on an instance over SSH",
        description="Sync this directory to the instance and run SCRIPT with ARGS there, "
        "detached. runctl's options go before SCRIPT; ARGS are passed verbatim.",
    )
    train.add_argument("id", metavar="ID", help="instance id")
    train.add_argument("--data-s3", metavar="URI", default="", help="download to data/ first")
    train.add_argument(
        "--output-s3", metavar="URI", default="", help="upload checkpoints and outputs here"
    )
    train.add_argument(
        "--allow-concurrent", action="store_true", help="start even if a run is active there"
    )
    add_script_arguments(train)
    train.set_defaults(handler=cmd_train)

    monitor = actions.add_parser("monitor", help="a run's status, uploads and log")
    monitor.add_argument("id", metavar="ID", help="instance id (its newest run) or run id")
    monitor.add_argument("--follow", "-f", action="store_true", help="follow the log")
    monitor.add_argument("--lines", "-n", type=int, default=20, help="log lines to show")
    monitor.set_defaults(handler=cmd_monitor)

    stop_run = actions.add_parser(
        "stop-run", help="stop a run on its instance (SIGINT, SIGTERM, SIGKILL; the instance stays)"
    )
    stop_run.add_argument("id", metavar="ID", help="run id, or instance id (its newest run)")
    stop_run.set_defaults(handler=cmd_stop_run)

    resume = actions.add_parser("resume", help="resume an interrupted run on a new instance")
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.set_defaults(handler=cmd_resume)

    for verb, text in (("stop", "stop an instance"), ("start", "start a stopped instance")):
        sub = actions.add_parser(verb, help=text)
        sub.add_argument("id", metavar="ID")
        sub.set_defaults(handler=cmd_lifecycle, verb=verb)

    terminate = actions.add_parser("terminate", help="terminate an instance and its disk")
    terminate.add_argument("id", metavar="ID")
    terminate.add_argument("--yes", "-y", action="store_true", help="do not ask")
    terminate.set_defaults(handler=cmd_terminate)

    prices = actions.add_parser("prices", help="on-demand (table) and spot (live) $/h")
    prices.add_argument("--json", action="store_true", help="as JSON")
    prices.set_defaults(handler=cmd_prices)


# -- helpers -------------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _backend(config: Config, **kwargs: Any) -> AwsBackend:
    from runctl_tui.core.backends.aws import AwsBackend

    kwargs.setdefault("poll_interval", min(2.0, config.monitor.poll_seconds))
    return AwsBackend(config, **kwargs)


def _money(value: float | None, estimate: bool = False) -> str:
    if value is None:
        return "-"
    return f"{'~' if estimate else ''}${value:.4f}"


def _machine_json(machine: Machine) -> dict[str, Any]:
    return {
        "id": machine.id,
        "name": machine.name,
        "instance_type": machine.tags.get("instance_type", ""),
        "gpu": machine.gpu_type,
        "gpu_count": machine.gpu_count,
        "lifecycle": "spot" if machine.spot else "on-demand",
        "state": machine.state.value,
        "raw_state": machine.raw_state,
        "state_reason": machine.state_reason,
        "public_ip": machine.tags.get("public_ip") or None,
        "private_ip": machine.tags.get("private_ip") or None,
        "ssh": f"{machine.ssh.user}@{machine.ssh.host}:{machine.ssh.port}" if machine.ssh else None,
        "zone": machine.region,
        "uptime_seconds": machine.uptime_seconds(),
        "price_per_hour": machine.price_per_hour,
        "price_is_estimate": machine.price_is_estimate,
        "accrued_cost": machine.cost_so_far(),
        "tags": {
            k: v
            for k, v in machine.tags.items()
            if k not in ("instance_type", "public_ip", "private_ip")
        },
    }


# -- handlers ------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, context: Context) -> int:
    """List runctl's instances (or all of the region's)."""
    backend = _backend(context.config, show_all=args.all)
    machines = _run(backend.list_machines())
    if args.json:
        print_json([_machine_json(m) for m in machines])
        return EXIT_OK
    if not machines:
        scope = "in the region" if args.all else "created by runctl (try --all)"
        print(f"No instances {scope} in {backend.clients.region}.")
        return EXIT_OK
    header = ("ID", "NAME", "TYPE", "GPUS", "MARKET", "STATE", "IP", "UPTIME", "$/H", "COST")
    rows = []
    for m in machines:
        state = m.state.value + (f" ({m.state_reason})" if m.state_reason else "")
        gpus = f"{m.gpu_count}x {m.gpu_type}" if m.gpu_count else "-"
        rows.append(
            (
                m.id,
                m.name,
                m.tags.get("instance_type", ""),
                gpus,
                "spot" if m.spot else "on-demand",
                state,
                m.tags.get("public_ip") or m.tags.get("private_ip") or "-",
                uptime_text(m),
                _money(m.price_per_hour, m.price_is_estimate),
                _money(m.cost_so_far(), m.price_is_estimate),
            )
        )
    print_table([header, *rows])
    if any(m.price_is_estimate for m in machines):
        print("~ estimated from runctl's on-demand price table (runctl aws prices)")
    return EXIT_OK


def _with_overrides(config: Config, args: argparse.Namespace) -> Config:
    changes: dict[str, Any] = {}
    if args.key_name:
        changes["key_name"] = args.key_name
    if args.security_group:
        changes["security_group_ids"] = list(args.security_group)
    if not changes:
        return config
    return dataclasses.replace(config, aws=dataclasses.replace(config.aws, **changes))


def cmd_create(args: argparse.Namespace, context: Context) -> int:
    """Launch an instance; spot fallback as configured or as `--fallback` says."""
    from runctl_tui.core.models import CreateSpec, Provider

    config = _with_overrides(context.config, args)
    backend = _backend(config)
    spot = config.aws.spot if args.spot is None else args.spot
    spec = CreateSpec(
        provider=Provider.AWS,
        machine_type=args.type or config.aws.instance_type,
        name=args.name or "",
        spot=spot,
        max_price=args.max_price,
        image=args.ami or "",
        disk_gb=args.disk,
        fallback=args.fallback,
    )

    async def go() -> Machine:
        outcome = await backend.create_instance(spec)
        print(scrub(outcome.message), file=sys.stderr if args.json else sys.stdout, flush=True)
        if not args.wait:
            return outcome.machine
        return await backend.wait_until_ready(outcome.machine.id, status)

    machine = _run(go())
    if args.json:
        print_json(_machine_json(machine))
    elif args.wait:
        assert machine.ssh is not None
        print(
            f"{machine.id} is ready: ssh -p {machine.ssh.port} {machine.ssh.user}@{machine.ssh.host}"
        )
    else:
        print(f"{machine.id} is {machine.raw_state}; `runctl aws create --wait` waits for SSH.")
    return EXIT_OK


def cmd_train(args: argparse.Namespace, context: Context) -> int:
    """Start a script on an instance; follow its log unless --background."""
    from runctl_tui.core.aws_training import start_training

    config = context.config
    backend = _backend(config)
    started = _run(
        start_training(
            config,
            backend,
            args.id,
            args.script,
            list(args.script_args),
            data_s3=args.data_s3,
            output_s3=args.output_s3,
            allow_concurrent=args.allow_concurrent,
            progress=status,
        )
    )
    run = started.run
    print(f"run {run.id} started on {args.id} (pid {run.pid}); log {run.log_path}")
    if args.background:
        print(f"Follow it with: runctl aws monitor {run.id} --follow")
        return EXIT_OK
    return _follow(config, backend, run.id)


def _resolve_run(config: Config, backend: AwsBackend, ident: str) -> Run:
    from runctl_tui.core.models import Provider
    from runctl_tui.core.runs import RunRegistry

    registry = RunRegistry()
    if ident.startswith("i-"):
        run = registry.latest_for_machine(Provider.AWS, ident)
        if run is None:
            raise RunctlError(
                f"no run recorded on instance {ident}; start one with runctl aws train"
            )
        return run
    return registry.get(ident)


def _print_state(state: Any) -> None:
    run = state.run
    machine = state.machine
    where = (
        f"{machine.id} {machine.raw_state}"
        + (f" ({machine.state_reason})" if machine.state_reason else "")
        if machine
        else "instance gone"
    )
    print(f"run {run.id}: {run.status.value} on {where}")
    print(f"  script: {run.script} {' '.join(run.args)}")
    if run.exit_code is not None:
        print(f"  exit code: {run.exit_code}")
    if run.note:
        print(f"  note: {run.note}")
    if state.marker:
        marker = state.marker
        print(
            f"  SPOT INTERRUPTION: {marker.get('action')} at {marker.get('time')}; "
            + (
                f"checkpoint uploaded to {', '.join(marker.get('s3_keys', []))}"
                if marker.get("uploaded")
                else f"upload: {marker.get('upload_error', marker.get('status'))}"
            )
        )
    if state.uploads:
        uploaded = state.uploads.get("uploaded", {})
        if uploaded:
            newest = max(uploaded.items(), key=lambda item: item[1].get("at", 0))
            print(f"  in S3: {len(uploaded)} checkpoint file(s), newest {newest[1].get('key')}")
        errors = state.uploads.get("errors") or []
        if errors:
            print(f"  UPLOAD FAILING ({len(errors)} error(s)), latest: {errors[-1]}")


async def _tail(config: Config, machine: Machine, run: Run, lines: int) -> list[str]:
    from runctl_tui.core.aws_training import log_source

    source = log_source(config, machine, run)
    iterator = source.follow(initial_lines=lines)
    try:
        chunk = await wait_for(iterator.__anext__(), timeout=30)
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
    shown = list(chunk.lines)
    if chunk.partial:
        shown.append(chunk.partial)
    return shown


@dataclasses.dataclass
class _TailProgress:
    """When the log tail delivered its first and its latest chunk."""

    first: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    last: float = dataclasses.field(default_factory=time.monotonic)

    def saw_chunk(self) -> None:
        self.last = time.monotonic()
        self.first.set()

    async def drain(self, quiet: float = 1.0, limit: float = 20.0) -> None:
        """After a run ended: let its tail connect and the last lines arrive."""
        deadline = time.monotonic() + limit
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_for(self.first.wait(), timeout=limit)
        # A quiet period, not an event: the log has no end-of-file marker.
        while time.monotonic() < deadline and time.monotonic() - self.last < quiet:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _follow(config: Config, backend: AwsBackend, run_id: str) -> int:
    """Print the run's log as it grows until the run ends (Ctrl-C detaches)."""
    from runctl_tui.core.aws_training import inspect_run, log_source, resume_run
    from runctl_tui.core.models import MachineState, RunStatus

    async def follow_once(current: str) -> Any:
        state = await inspect_run(config, backend, current)
        if state.machine is None or state.machine.state is not MachineState.RUNNING:
            return state
        if state.run.status is not RunStatus.RUNNING:
            # Already over (a short run): show how it ended.
            for line in await _tail(config, state.machine, state.run, 20):
                print(scrub(line), flush=True)
            return state
        source = log_source(config, state.machine, state.run)

        seen = _TailProgress()

        async def printer() -> None:
            async for chunk in source.follow(initial_lines=20):
                print_chunk(chunk)
                seen.saw_chunk()

        task = asyncio.create_task(printer())
        try:
            while True:
                await asyncio.sleep(config.monitor.poll_seconds)
                state = await inspect_run(config, backend, current)
                if state.run.status is not RunStatus.RUNNING:
                    await seen.drain()
                    return state
        finally:
            if task.done() and not task.cancelled() and task.exception() is not None:
                status(f"log tail stopped: {task.exception()}")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RunctlError):
                await task

    async def go() -> int:
        current = run_id
        while True:
            state = await follow_once(current)
            _print_state(state)
            if state.run.status is RunStatus.INTERRUPTED and config.aws.auto_resume:
                status("auto_resume is on: launching a replacement and resuming from S3")
                started = await resume_run(config, backend, current, progress=status)
                print(f"run {started.run.id} resumed on {started.run.machine}")
                continue
            if state.run.status is RunStatus.INTERRUPTED:
                print(
                    f"Resume it on a new instance with: runctl aws resume {state.run.id} "
                    "(or set [aws] auto_resume = true)"
                )
            return EXIT_OK if state.run.status is RunStatus.SUCCEEDED else EXIT_FAILURE

    try:
        return _run(go())
    except KeyboardInterrupt:
        print(f"\nDetached; run {run_id} goes on. runctl aws monitor {run_id} --follow")
        return EXIT_OK


def cmd_monitor(args: argparse.Namespace, context: Context) -> int:
    """Show a run (status, interruption marker, S3 uploads, log tail); --follow streams it."""
    from runctl_tui.core.aws_training import inspect_run
    from runctl_tui.core.models import MachineState

    config = context.config
    backend = _backend(config)
    run = _resolve_run(config, backend, args.id)
    if args.follow:
        return _follow(config, backend, run.id)

    async def go() -> None:
        state = await inspect_run(config, backend, run.id)
        _print_state(state)
        machine = state.machine
        if machine is not None and machine.state is MachineState.RUNNING and args.lines > 0:
            for line in await _tail(config, machine, state.run, args.lines):
                print(scrub(line))

    _run(go())
    return EXIT_OK


def cmd_stop_run(args: argparse.Namespace, context: Context) -> int:
    """Stop a run on its instance; its S3 agent still uploads the final outputs."""
    from runctl_tui.core.aws_training import stop_run

    config = context.config
    backend = _backend(config)
    run = _resolve_run(config, backend, args.id)
    stopped = _run(stop_run(config, backend, run.id))
    code = f" (exit code {stopped.exit_code})" if stopped.exit_code is not None else ""
    print(f"run {stopped.id}: {stopped.status.value}{code}")
    return EXIT_OK if stopped.status.is_final else EXIT_FAILURE


def cmd_resume(args: argparse.Namespace, context: Context) -> int:
    """Resume an interrupted run from its newest S3 checkpoint on a replacement instance."""
    from runctl_tui.core.aws_training import inspect_run, resume_run

    config = context.config
    backend = _backend(config)

    async def go() -> Any:
        await inspect_run(config, backend, args.run_id)
        return await resume_run(config, backend, args.run_id, progress=status)

    started = _run(go())
    print(f"run {started.run.id} resumed on {started.run.machine} from {started.info.resumed_from}")
    return EXIT_OK


def cmd_lifecycle(args: argparse.Namespace, context: Context) -> int:
    """`stop` or `start` an instance."""
    backend = _backend(context.config)
    action: Callable[[str], Coroutine[Any, Any, Machine]] = getattr(backend, args.verb)
    machine = _run(action(args.id))
    print(f"{machine.id}: {machine.raw_state}")
    return EXIT_OK


def cmd_terminate(args: argparse.Namespace, context: Context) -> int:
    """Terminate an instance, warning first when its newest checkpoint is not in S3."""
    from runctl_tui.core.aws_training import unsynced_checkpoint_warning

    config = context.config
    backend = _backend(config)

    async def check() -> tuple[Machine, str | None]:
        machine = await backend.get_machine(args.id)
        return machine, await unsynced_checkpoint_warning(config, backend, args.id)

    machine, warning = _run(check())
    if warning:
        warn(warning)
    if not args.yes:
        refused = confirm_terminate(
            f"Terminate {machine.id} ({machine.name}) and delete its disk?",
            f"terminating {args.id} needs confirmation: pass --yes",
        )
        if refused is not None:
            return refused

    async def go() -> Machine:
        await backend.terminate(args.id)
        return await backend.get_machine(args.id)

    after = _run(go())
    print(f"{after.id}: {after.raw_state}")
    return EXIT_OK


def cmd_prices(args: argparse.Namespace, context: Context) -> int:
    """On-demand $/h from the dated table, spot $/h live from the region."""
    backend = _backend(context.config)
    offers = _run(backend.offers())
    table = backend.price_table
    if args.json:
        print_json(
            {
                "region": backend.clients.region,
                "on_demand_source": table.source,
                "on_demand_as_of": table.as_of,
                "on_demand_region": table.region,
                "overridden_by": table.overridden_by or None,
                "retrieved_at": time.time(),
                "types": [
                    {
                        "instance_type": o.id,
                        "gpu_count": o.gpu_count,
                        "gpus": o.display_name,
                        "on_demand_per_hour": o.price_per_hour,
                        "on_demand_is_estimate": True,
                        "spot_per_hour": o.spot_price_per_hour,
                        "spot_is_estimate": False,
                    }
                    for o in offers
                ],
            }
        )
        return EXIT_OK
    width = max(len(o.display_name) for o in offers) if offers else 10
    print(f"{'TYPE'.ljust(width)}  ON-DEMAND (est.)  SPOT (live, {backend.clients.region})")
    for offer in offers:
        print(
            f"{offer.display_name.ljust(width)}  {_money(offer.price_per_hour, True):<16}  "
            f"{_money(offer.spot_price_per_hour)}"
        )
    print(
        f"On-demand: {table.region} list prices as of {table.as_of} ({table.source})"
        + (f", overridden by {table.overridden_by}" if table.overridden_by else "")
    )
    return EXIT_OK
