"""`runctl runpod ...`: RunPod pods (list, create, stop, start, terminate, gpus) and training on
them over SSH (train, monitor, checkpoints, download).

httpx and asyncssh are imported inside the handlers: every `runctl` call imports this module
to build the parser.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from runctl_tui.cli.common import EXIT_FAILURE, EXIT_OK, Context, fail, print_json, warn
from runctl_tui.cli.remote_common import (
    add_script_arguments,
    confirm_terminate,
    print_chunk,
    print_table,
    status,
    uptime_text,
)
from runctl_tui.core.aio import wait_for
from runctl_tui.core.errors import NotFoundError, RunctlError
from runctl_tui.core.secrets import scrub

if TYPE_CHECKING:
    from runctl_tui.core.backends.runpod import RunPodBackend
    from runctl_tui.core.config import Config
    from runctl_tui.core.models import Machine, Run

ORDER = 30
T = TypeVar("T")


def register(subparsers: Any) -> None:
    """Add `runpod` and its actions to the `runctl` parser."""
    runpod = subparsers.add_parser("runpod", help="RunPod GPU pods and training on them")
    actions = runpod.add_subparsers(dest="runpod_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="your pods with status, price and cost so far")
    listing.add_argument("--json", action="store_true", help="as JSON")
    listing.set_defaults(handler=cmd_list)

    create = actions.add_parser(
        "create",
        help="create a pod (SSH on) and optionally wait until it runs",
        description="Create a pod with SSH enabled and 22/tcp exposed. The price printed "
        "first is the catalog price of exactly what is asked for; the pod's own price follows.",
    )
    create.add_argument("--gpu", metavar="TYPE", help="GPU type id ([runpod] gpu_type)")
    create.add_argument("--count", type=int, metavar="N", help="GPUs ([runpod] gpu_count)")
    create.add_argument(
        "--cloud", choices=("secure", "community"), help="cloud tier ([runpod] cloud_type)"
    )
    create.add_argument("--name", metavar="N", help="pod name (default: runctl-<time>)")
    create.add_argument("--image", metavar="I", help="container image ([runpod] image)")
    create.add_argument("--disk", type=int, metavar="GB", help="container disk in GB")
    create.add_argument("--volume", type=int, metavar="GB", help="volume at /workspace in GB")
    create.add_argument(
        "--data-center",
        action="append",
        metavar="ID",
        help="preferred data centre (repeatable; [runpod] data_centers)",
    )
    create.add_argument(
        "--wait", action="store_true", help="wait until RUNNING and SSH answers, showing states"
    )
    create.add_argument("--json", action="store_true", help="print the pod as JSON")
    create.set_defaults(handler=cmd_create)

    train = actions.add_parser(
        "train",
        help="run a training script on a pod over SSH",
        description="Sync this directory to the pod and run SCRIPT with ARGS there, detached. "
        "runctl's options go before SCRIPT; ARGS are passed verbatim.",
    )
    train.add_argument("pod", metavar="POD", help="pod id or name")
    train.add_argument(
        "--allow-concurrent", action="store_true", help="start even if a run is active there"
    )
    add_script_arguments(train)
    train.set_defaults(handler=cmd_train)

    stop_run = actions.add_parser(
        "stop-run", help="stop a run on its pod (SIGINT, SIGTERM, SIGKILL; the pod stays)"
    )
    stop_run.add_argument("id", metavar="ID", help="run id, or pod id or name (its newest run)")
    stop_run.set_defaults(handler=cmd_stop_run)

    monitor = actions.add_parser("monitor", help="a pod, its newest run and the run's log")
    monitor.add_argument("pod", metavar="POD", help="pod id or name")
    monitor.add_argument("--follow", "-f", action="store_true", help="follow the log")
    monitor.add_argument(
        "--container", action="store_true", help="the container log (RunPod's stream) instead"
    )
    monitor.add_argument("--lines", "-n", type=int, default=20, help="log lines to show first")
    monitor.set_defaults(handler=cmd_monitor)

    for verb, text in (
        ("stop", "stop a pod (its volume stays; compute billing stops)"),
        ("start", "start a stopped pod"),
        ("restart", "restart a running pod's container"),
    ):
        sub = actions.add_parser(verb, help=text)
        sub.add_argument("pod", metavar="POD", help="pod id or name")
        sub.set_defaults(handler=cmd_lifecycle, verb=verb)

    terminate = actions.add_parser("terminate", help="terminate a pod and delete its disks")
    terminate.add_argument("pod", metavar="POD", help="pod id or name")
    terminate.add_argument("--yes", "-y", action="store_true", help="do not ask")
    terminate.set_defaults(handler=cmd_terminate)

    gpus = actions.add_parser("gpus", help="GPU types with prices and stock")
    gpus.add_argument("--cloud", choices=("secure", "community"), help="stock for this tier")
    gpus.add_argument("--count", type=int, default=1, metavar="N", help="stock for N GPUs")
    gpus.add_argument("--json", action="store_true", help="as JSON")
    gpus.set_defaults(handler=cmd_gpus)

    checkpoints = actions.add_parser("checkpoints", help="checkpoints on a pod")
    checkpoints.add_argument("pod", metavar="POD", help="pod id or name")
    checkpoints.add_argument(
        "--dir", metavar="REMOTE_DIR", help="directory (default: the newest run's checkpoints)"
    )
    checkpoints.add_argument("--json", action="store_true", help="as JSON")
    checkpoints.set_defaults(handler=cmd_checkpoints)

    download = actions.add_parser("download", help="download a checkpoint from a pod")
    download.add_argument("pod", metavar="POD", help="pod id or name")
    download.add_argument(
        "remote_path",
        metavar="REMOTE_PATH",
        help="absolute, or relative to the checkpoint directory `checkpoints` lists",
    )
    download.add_argument("dest", nargs="?", metavar="DEST", help="default: ./<name>")
    download.set_defaults(handler=cmd_download)


# -- helpers -------------------------------------------------------------------------------------


def _with_backend(config: Config, work: Callable[[RunPodBackend], Awaitable[T]]) -> T:
    """Run `work(backend)` in a fresh event loop, closing the backend's connections after."""
    from runctl_tui.core.backends.runpod import RunPodBackend

    async def go() -> T:
        backend = RunPodBackend(config)
        try:
            return await work(backend)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def _money(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"${value:.{digits}f}"


def _machine_json(machine: Machine) -> dict[str, Any]:
    ssh = machine.ssh
    return {
        "id": machine.id,
        "name": machine.name,
        "status": machine.raw_state,
        "state": machine.state.value,
        "state_reason": machine.state_reason,
        "gpu": machine.gpu_type,
        "gpu_count": machine.gpu_count,
        "cloud": machine.tags.get("cloud", ""),
        "data_center": machine.region,
        "price_per_hour": machine.price_per_hour,
        "uptime_seconds": machine.uptime_seconds(),
        "accrued_cost": machine.cost_so_far(),
        "gpu_utilisation": [g.utilisation_percent for g in machine.gpus],
        "gpu_memory": [g.memory_percent for g in machine.gpus],
        "ssh": None
        if ssh is None
        else {
            "host": ssh.host,
            "port": ssh.port,
            "user": ssh.user,
            "interactive_only": ssh.interactive_only,
        },
        "actions": list(machine.actions),
        "created_at": machine.created_at,
    }


def _ssh_text(machine: Machine) -> str:
    if machine.ssh is None:
        return "-"
    text = f"{machine.ssh.user}@{machine.ssh.host}:{machine.ssh.port}"
    return text + " (proxy, shell only)" if machine.ssh.interactive_only else text


def _describe(machine: Machine) -> str:
    utilisation = ", ".join(
        f"GPU{g.index} {g.utilisation_percent:.0f}%"
        for g in machine.gpus
        if g.utilisation_percent is not None
    )
    parts = [
        f"pod {machine.id} ({machine.name}): {machine.raw_state}",
        f"{machine.gpu_count} x {machine.gpu_type}",
        f"{machine.tags.get('cloud', '')} {machine.region}".strip(),
        f"{_money(machine.price_per_hour)}/h",
        f"up {uptime_text(machine)}",
        f"spent {_money(machine.cost_so_far())}",
    ]
    if utilisation:
        parts.append(utilisation)
    return ", ".join(parts)


# -- handlers ------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod list [--json]`."""

    async def work(backend: RunPodBackend) -> list[Machine]:
        return await backend.list_machines()

    machines = _with_backend(context.config, work)
    if args.json:
        print_json([_machine_json(m) for m in machines])
        return EXIT_OK
    if not machines:
        print("No pods. Create one with `runctl runpod create --wait`.")
        return EXIT_OK
    rows = [["ID", "NAME", "STATUS", "GPU", "CLOUD", "DC", "$/H", "UPTIME", "SPENT", "SSH"]]
    for m in machines:
        rows.append(
            [
                m.id,
                m.name,
                m.raw_state,
                f"{m.gpu_count}x {m.gpu_type}",
                m.tags.get("cloud", ""),
                m.region or "-",
                _money(m.price_per_hour),
                uptime_text(m),
                _money(m.cost_so_far()),
                _ssh_text(m),
            ]
        )
    print_table(rows)
    billing = sum(m.price_per_hour or 0.0 for m in machines)
    print(f"\nBilling now: {_money(billing)}/h for compute.")
    return EXIT_OK


def cmd_create(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod create [...] [--wait]`: the price before and after, each state waiting."""
    from runctl_tui.core.models import CreateSpec, Provider

    config = context.config
    section = config.runpod
    gpu = args.gpu or section.gpu_type
    count = args.count or section.gpu_count
    cloud = (args.cloud or section.cloud_type).upper()
    if count < 1:
        return fail("--count must be at least 1", 2)
    spec = CreateSpec(
        provider=Provider.RUNPOD,
        machine_type=gpu,
        name=args.name or "",
        gpu_count=count,
        spot=cloud == "COMMUNITY",
        image=args.image or "",
        disk_gb=args.disk,
        volume_gb=args.volume,
        data_centers=tuple(args.data_center or ()),
    )

    async def work(backend: RunPodBackend) -> Machine:
        price, stock = await backend.quote(gpu, count, cloud)
        quoted = f"{_money(price)}/h" if price is not None else "an unlisted price"
        status(
            f"creating {count} x {gpu} ({cloud}) at {quoted} (catalog price; stock "
            f"{stock or 'unknown'})"
        )
        machine = await backend.create(spec)
        status(
            f"pod {machine.id} ({machine.name}) created: {machine.raw_state} in "
            f"{machine.region or 'a data centre RunPod picks'}, billed "
            f"{_money(machine.price_per_hour)}/h"
        )
        if price is not None and machine.price_per_hour not in (None, price):
            warn(
                f"RunPod bills this pod {_money(machine.price_per_hour)}/h, not the catalog's "
                f"{_money(price)}/h"
            )
        if not args.wait:
            return machine

        def show(current: Machine, ssh_ready: bool) -> None:
            if ssh_ready:
                status(f"{current.raw_state}: SSH answers at {_ssh_text(current)}")
            elif current.raw_state == "RUNNING":
                status(f"{current.raw_state}: waiting for SSH at {_ssh_text(current)}")
            else:
                status(current.raw_state)

        return await backend.wait_until_ready(
            machine.id,
            timeout=section.wait_timeout_seconds,
            poll_seconds=config.monitor.poll_seconds,
            on_change=show,
        )

    machine = _with_backend(config, work)
    if args.json:
        print_json(_machine_json(machine))
    else:
        print(machine.id)
    return EXIT_OK


def cmd_train(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod train POD [--background] SCRIPT ARGS...`."""
    from runctl_tui.core.models import RunStatus
    from runctl_tui.core.runpod_training import follow_run, start_training

    config = context.config

    async def work(backend: RunPodBackend) -> int:
        started = await start_training(
            config,
            backend,
            args.pod,
            args.script,
            list(args.script_args),
            progress=status,
            wait_timeout=config.runpod.wait_timeout_seconds,
            poll_seconds=config.monitor.poll_seconds,
            allow_concurrent=args.allow_concurrent,
        )
        run = started.run
        print(
            f"run {run.id} started on pod {run.machine} (pid {run.pid}, "
            f"{run.interpreter or 'direct'}); log {run.log_path}",
            flush=True,
        )
        if args.background:
            print(f"Follow it with: runctl runpod monitor {run.machine} --follow")
            return EXIT_OK
        final = await follow_run(
            backend, run, print_chunk, poll_seconds=config.monitor.poll_seconds
        )
        print(f"run {final.id}: {final.status.value}" + _exit_text(final))
        return EXIT_OK if final.status is RunStatus.SUCCEEDED else EXIT_FAILURE

    try:
        return _with_backend(config, work)
    except KeyboardInterrupt:
        print("\nDetached; the run goes on. `runctl runpod monitor POD --follow` follows it.")
        return 130


def cmd_stop_run(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod stop-run ID`: stop a run on its pod; the pod keeps running."""
    from runctl_tui.core.models import Provider
    from runctl_tui.core.runpod_training import latest_run, stop_training
    from runctl_tui.core.runs import RunRegistry

    async def work(backend: RunPodBackend) -> Run:
        registry = RunRegistry()
        try:
            run = await asyncio.to_thread(registry.get, args.id)
        except NotFoundError:
            machine = await backend.resolve(args.id)
            newest = await asyncio.to_thread(latest_run, machine.id, registry)
            if newest is None:
                raise NotFoundError(
                    f"no run recorded on pod {args.id}; start one with runctl runpod train"
                ) from None
            run = newest
        if run.backend is not Provider.RUNPOD:
            raise RunctlError(f"run {run.id} is not on a RunPod pod (it is {run.backend.value})")
        if run.status.is_final:
            return run
        return await stop_training(backend, run, registry)

    stopped = _with_backend(context.config, work)
    print(f"run {stopped.id}: {stopped.status.value}{_exit_text(stopped)}")
    return EXIT_OK if stopped.status.is_final else EXIT_FAILURE


def _exit_text(run: Run) -> str:
    return f" (exit code {run.exit_code})" if run.exit_code is not None else ""


def cmd_monitor(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod monitor POD [--follow] [--container]`."""
    from runctl_tui.core.runpod_training import follow_run, latest_run, log_source, refresh_run

    config = context.config

    async def container(backend: RunPodBackend, machine: Machine) -> int:
        source = backend.container_logs(machine.id)
        async for chunk in source.follow(initial_lines=args.lines):
            print_chunk(chunk)
            if not args.follow:
                return EXIT_OK
        return EXIT_OK

    async def work(backend: RunPodBackend) -> int:
        machine = await backend.resolve(args.pod)
        print(_describe(machine))
        if args.container:
            return await container(backend, machine)
        run = await asyncio.to_thread(latest_run, machine.id)
        if run is None:
            print(
                f"No run recorded on this pod. Start one with: runctl runpod train {machine.id} SCRIPT"
            )
            return EXIT_OK
        run, current = await refresh_run(backend, run)
        print(
            f"run {run.id}: {run.status.value}{_exit_text(run)}; "
            f"{run.script} {' '.join(run.args)}".rstrip()
        )
        if current is None or current.state.value != "running":
            return EXIT_OK
        if args.follow and not run.status.is_final:
            final = await follow_run(
                backend,
                run,
                print_chunk,
                initial_lines=args.lines,
                poll_seconds=config.monitor.poll_seconds,
            )
            print(f"run {final.id}: {final.status.value}{_exit_text(final)}")
            return EXIT_OK
        if args.lines > 0:
            iterator = log_source(current, run).follow(initial_lines=args.lines)
            try:
                chunk = await wait_for(iterator.__anext__(), timeout=60)
            finally:
                close = getattr(iterator, "aclose", None)
                if close is not None:
                    await close()
            print_chunk(chunk)
            if chunk.partial:
                print(scrub(chunk.partial))
        return EXIT_OK

    try:
        return _with_backend(config, work)
    except KeyboardInterrupt:
        return 130


def cmd_lifecycle(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod stop|start|restart POD`."""

    async def work(backend: RunPodBackend) -> Machine:
        machine = await backend.resolve(args.pod)
        action: Callable[[str], Awaitable[Machine]] = getattr(backend, args.verb)
        return await action(machine.id)

    machine = _with_backend(context.config, work)
    print(f"pod {machine.id}: {machine.raw_state} ({_money(machine.price_per_hour)}/h)")
    return EXIT_OK


def cmd_terminate(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod terminate POD [--yes]`: refuses without --yes when nobody can answer."""
    from runctl_tui.core.models import RunStatus
    from runctl_tui.core.runpod_training import latest_run

    config = context.config

    async def find(backend: RunPodBackend) -> Machine:
        return await backend.resolve(args.pod)

    machine = _with_backend(config, find)
    run = latest_run(machine.id)
    active = run is not None and run.status is RunStatus.RUNNING
    what = (
        f"pod {machine.id} ({machine.name}, {machine.raw_state}, "
        f"{_money(machine.price_per_hour)}/h)"
    )
    if active and run is not None:
        warn(f"run {run.id} is recorded as running on {machine.id}; it will be lost")
    if not args.yes:
        refused = confirm_terminate(
            f"Terminate {what} and delete its disks?",
            f"terminating {what} deletes its container disk and volume; pass --yes to confirm",
        )
        if refused is not None:
            return refused

    async def go(backend: RunPodBackend) -> None:
        await backend.terminate(machine.id)

    _with_backend(config, go)
    if machine.ssh is not None and not machine.ssh.interactive_only:
        from runctl_tui.core.ssh import forget_host_key

        # The pod's address may be handed to another pod, with another host key.
        forget_host_key(machine.ssh.host, machine.ssh.port)
    print(f"pod {machine.id}: TERMINATED")
    return EXIT_OK


def cmd_gpus(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod gpus [--cloud] [--count N] [--json]`: the catalog with prices and stock."""
    config = context.config
    cloud = (args.cloud or config.runpod.cloud_type).upper()

    async def work(backend: RunPodBackend) -> Any:
        return await backend.offers(cloud=cloud, count=args.count)

    offers = _with_backend(config, work)
    if args.json:
        print_json(
            [
                {
                    "id": o.id,
                    "name": o.display_name,
                    "memory_gb": o.memory_gb,
                    "secure_price_per_hour": o.price_per_hour,
                    "community_price_per_hour": o.spot_price_per_hour,
                    "stock": o.stock,
                    "available": o.available,
                    "cloud": cloud,
                    "count": args.count,
                }
                for o in offers
            ]
        )
        return EXIT_OK
    rows = [["ID", "NAME", "VRAM", "SECURE $/H", "COMMUNITY $/H", f"STOCK ({cloud} x{args.count})"]]
    for o in offers:
        rows.append(
            [
                o.id,
                o.display_name,
                f"{o.memory_gb:.0f} GB" if o.memory_gb else "-",
                _money(o.price_per_hour),
                _money(o.spot_price_per_hour),
                o.stock or "-",
            ]
        )
    print_table(rows)
    print("\nPrices are per GPU; a pod of N GPUs costs N times as much.")
    return EXIT_OK


def _checkpoint_root(config: Config, machine: Machine, given: str | None) -> str:
    from runctl_tui.core.runpod_training import checkpoint_root

    return given or checkpoint_root(config, machine.id)


def cmd_checkpoints(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod checkpoints POD [--dir D] [--json]`: one listing over SSH."""
    from runctl_tui.core.runpod_training import list_pod_checkpoints

    config = context.config

    async def work(backend: RunPodBackend) -> tuple[str, Any]:
        machine = await backend.resolve(args.pod)
        root = _checkpoint_root(config, machine, args.dir)
        return root, await list_pod_checkpoints(machine, root)

    root, entries = _with_backend(config, work)
    if args.json:
        print_json([entry.to_json() for entry in entries])
        return EXIT_OK
    if not entries:
        print(f"No checkpoints in {root}.")
        return EXIT_OK
    import humanize

    print(f"Checkpoints in {root}:")
    rows = [["NAME", "FORMAT", "SIZE", "MODIFIED", "STEP", "EPOCH"]]
    for entry in entries:
        rows.append(
            [
                entry.name + (" (writing)" if entry.writing else ""),
                entry.format,
                humanize.naturalsize(entry.size_bytes),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.modified)),
                "-" if entry.step is None else str(entry.step),
                "-" if entry.epoch is None else str(entry.epoch),
            ]
        )
    print_table(rows)
    return EXIT_OK


def cmd_download(args: argparse.Namespace, context: Context) -> int:
    """`runctl runpod download POD REMOTE_PATH [DEST]`, with progress on stderr."""
    import posixpath

    import humanize

    from runctl_tui.core.runpod_training import download_from_pod

    config = context.config
    interactive = sys.stderr.isatty()
    shown = {"quarter": -1}

    def progress(done: int, total: int) -> None:
        text = f"{humanize.naturalsize(done)} / {humanize.naturalsize(total)}"
        if total:
            text += f" ({100 * done // total}%)"
        if interactive:
            print(f"\r  {text}   ", end="", file=sys.stderr, flush=True)
            return
        quarter = 4 * done // total if total else 4
        if quarter > shown["quarter"]:
            shown["quarter"] = quarter
            status(text)

    async def work(backend: RunPodBackend) -> tuple[str, Path, int]:
        machine = await backend.resolve(args.pod)
        remote = args.remote_path
        if not remote.startswith(("/", "~")):
            remote = posixpath.join(_checkpoint_root(config, machine, None), remote)
        dest = Path(args.dest) if args.dest else Path.cwd() / posixpath.basename(remote.rstrip("/"))
        if dest.is_dir():
            dest = dest / posixpath.basename(remote.rstrip("/"))
        return remote, dest, await download_from_pod(machine, remote, dest, progress=progress)

    try:
        remote, dest, size = _with_backend(config, work)
    except RunctlError:
        if interactive:
            print(file=sys.stderr)
        raise
    if interactive:
        print(file=sys.stderr)
    print(f"downloaded {remote} ({humanize.naturalsize(size)}) to {dest}")
    return EXIT_OK
