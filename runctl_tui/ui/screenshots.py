"""SVG screenshots of the dashboard, rendered by the app itself from a fixed state.

`python -m runctl_tui.ui.screenshots screenshots/` writes the dashboard, the create form and the
terminate confirmation at 80x24 and 160x48. The state is fixed: a frozen clock, machines from a
`FixedBackend` (the pictures must not depend on an account or on the time of day), and a real
local run of the bundled example, made by running it to the end with no pacing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import Fleet
from runctl_tui.core.models import (
    CreateSpec,
    GpuInfo,
    GpuOffer,
    Machine,
    MachineState,
    Provider,
    Run,
    RunStatus,
)
from runctl_tui.core.runs import RunRegistry
from runctl_tui.ui.app import RunctlApp
from runctl_tui.ui.screens.create_machine import CreateMachineScreen
from runctl_tui.ui.screens.terminate_confirm import TerminateConfirmScreen

if TYPE_CHECKING:
    from textual.pilot import Pilot

FIXED_NOW = 1_795_950_000.0
"""2026-11-29 11:00 UTC: every picture is taken at this instant."""
SIZES = ((80, 24), (160, 48))
LOCAL_KEY = "local:local"
POD_KEY = "runpod:k3x9pq2m7a"
SCENES: dict[str, tuple[str, tuple[str, ...]]] = {
    "dashboard": (LOCAL_KEY, ()),
    "create": (LOCAL_KEY, ("c",)),
    "terminate": (POD_KEY, ("x",)),
}
"""Each picture: the machine selected and the keys pressed to reach it."""
SHOTS_DIR = Path(tempfile.gettempdir()) / "runctl-screenshots"
"""The fixed state lives at a fixed path, because paths show in the pictures."""
DEMO_ARGS = ("--epochs", "3", "--steps-per-epoch", "40", "--sleep", "0", "--seed", "7")


class FixedBackend:
    """A backend whose machines and offers are given; create/stop/start/terminate change them.

    Only for pictures and UI tests that need the same screen every time; the real backends are
    tested against their loopback servers.

    Args:
        provider: The provider it stands for.
        machines: Its machines.
        offers: What it offers to create.
    """

    def __init__(
        self, provider: Provider, machines: list[Machine], offers: list[GpuOffer] | None = None
    ) -> None:
        self.provider = provider
        self.machines = list(machines)
        self.offers_list = list(offers or [])
        self.created: list[CreateSpec] = []
        self.terminated: list[str] = []

    async def list_machines(self) -> list[Machine]:
        """The machines, as given."""
        return list(self.machines)

    async def offers(self) -> list[GpuOffer]:
        """The offers, as given."""
        return list(self.offers_list)

    async def create(self, spec: CreateSpec) -> Machine:
        """Add a provisioning machine."""
        self.created.append(spec)
        machine = Machine(
            self.provider,
            f"new{len(self.created)}",
            spec.name or f"runctl-{len(self.created)}",
            MachineState.PROVISIONING,
            gpu_type=spec.machine_type,
            gpu_count=spec.gpu_count,
        )
        self.machines.append(machine)
        return machine

    def _replace_state(self, machine_id: str, state: MachineState) -> Machine:
        for index, machine in enumerate(self.machines):
            if machine.id == machine_id:
                self.machines[index] = replace(machine, state=state)
                return self.machines[index]
        raise KeyError(machine_id)

    async def stop(self, machine_id: str) -> Machine:
        """Mark the machine stopped."""
        return self._replace_state(machine_id, MachineState.STOPPED)

    async def start(self, machine_id: str) -> Machine:
        """Mark the machine starting."""
        return self._replace_state(machine_id, MachineState.STARTING)

    async def terminate(self, machine_id: str) -> None:
        """Remove the machine."""
        self.terminated.append(machine_id)
        self.machines = [m for m in self.machines if m.id != machine_id]

    async def aclose(self) -> None:
        """Nothing to close."""


def fixed_backends(now: float = FIXED_NOW) -> dict[Provider, FixedBackend]:
    """This computer, two RunPod pods and two EC2 instances, in fixed states."""
    hour = 3600.0
    local = Machine(
        Provider.LOCAL, "local", "workstation", MachineState.RUNNING, started_at=now - 50 * hour
    )
    pods = [
        Machine(
            Provider.RUNPOD,
            "k3x9pq2m7a",
            "llama-ft",
            MachineState.RUNNING,
            raw_state="RUNNING",
            gpu_type="NVIDIA GeForce RTX 4090",
            gpu_count=2,
            price_per_hour=0.69 * 2,
            region="EU-RO-1",
            started_at=now - 5.2 * hour,
            gpus=(GpuInfo(0, 93.0, 71.0), GpuInfo(1, 88.0, 70.0)),
        ),
        Machine(
            Provider.RUNPOD,
            "b7f2c9d1e0",
            "sweep-lr-3e4",
            MachineState.STOPPED,
            raw_state="EXITED",
            gpu_type="NVIDIA A100 80GB PCIe",
            gpu_count=1,
            price_per_hour=1.64,
            accrued_cost=4.92,
        ),
    ]
    instances = [
        Machine(
            Provider.AWS,
            "i-0a1b2c3d4e5f60718",
            "vit-base-spot",
            MachineState.RUNNING,
            raw_state="running",
            gpu_type="A10G",
            gpu_count=1,
            price_per_hour=0.4123,
            spot=True,
            region="us-east-1",
            started_at=now - 2.5 * hour,
        ),
        Machine(
            Provider.AWS,
            "i-09f8e7d6c5b4a3921",
            "eval-box",
            MachineState.PROVISIONING,
            raw_state="pending",
            gpu_type="L4",
            gpu_count=1,
            price_per_hour=0.8048,
            price_is_estimate=True,
            region="us-east-1",
            started_at=now - 60,
        ),
    ]
    runpod_offers = [
        GpuOffer(Provider.RUNPOD, "NVIDIA GeForce RTX 4090", "RTX 4090", 1, 24, 0.69, 0.34, False, True, "High"),
        GpuOffer(Provider.RUNPOD, "NVIDIA A100 80GB PCIe", "A100 80GB", 1, 80, 1.64, 1.19, False, True, "Low"),
        GpuOffer(Provider.RUNPOD, "NVIDIA H100 80GB HBM3", "H100 SXM", 1, 80, 2.99, None, False, False, ""),
    ]  # fmt: skip
    aws_offers = [
        GpuOffer(Provider.AWS, "g5.xlarge", "g5.xlarge (A10G)", 1, 24, 1.006, 0.4123, True, True),
        GpuOffer(Provider.AWS, "g6.xlarge", "g6.xlarge (L4)", 1, 24, 0.8048, 0.3219, True, True),
    ]
    return {
        Provider.LOCAL: FixedBackend(Provider.LOCAL, [local]),
        Provider.RUNPOD: FixedBackend(Provider.RUNPOD, pods, runpod_offers),
        Provider.AWS: FixedBackend(Provider.AWS, instances, aws_offers),
    }


def make_demo_run(workdir: Path, registry: RunRegistry, now: float = FIXED_NOW) -> Run:
    """Run the bundled example to the end (no pacing) and record it as a running local run.

    Args:
        workdir: Where its log, metrics and checkpoints go.
        registry: The run registry to record it in.
        now: The fixed clock; the run started an hour before.

    Returns:
        The recorded run (status `succeeded`: it ran to the end).
    """
    run_id = "20261129-071900-demo"
    run_dir = workdir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    checkpoints = workdir / "checkpoints"
    script = Path(__file__).resolve().parent.parent / "examples" / "train_demo.py"
    env = dict(os.environ, RUNCTL_LOG_PATH=str(log), RUNCTL_RUN_ID=run_id)
    with log.open("w", encoding="utf-8") as out:
        subprocess.run(
            [sys.executable, str(script), *DEMO_ARGS, "--checkpoint-dir", str(checkpoints)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    for path in checkpoints.glob("ckpt-*.json"):
        # The example stamps checkpoints with the wall clock; pictures use the frozen one.
        data = json.loads(path.read_text(encoding="utf-8"))
        data["created"] = now - 60
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    for path in [*checkpoints.rglob("*"), *run_dir.rglob("*")]:
        os.utime(path, (now - 60, now - 60))
    run = Run(
        id=run_id,
        backend=Provider.LOCAL,
        machine="local",
        script=str(script),
        args=DEMO_ARGS,
        cwd=str(workdir),
        status=RunStatus.SUCCEEDED,
        started=now - 3600,
        ended=now - 60,
        exit_code=0,
        log_path=str(log),
        checkpoint_dir=str(checkpoints),
    )
    registry.add(run)
    return run


def fixed_fleet(config: Config, workdir: Path, now: float = FIXED_NOW) -> Fleet:
    """A fleet in a fixed state: the fixed backends, and the demo run in a private registry.

    Args:
        config: The configuration to show it with.
        workdir: A folder for the registry and the run's files (emptied first).
        now: The frozen clock.

    Returns:
        The fleet (not yet polled: see `prime`).
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    registry = RunRegistry(workdir / "runs.db")
    make_demo_run(workdir, registry, now)
    return Fleet(config, backends=fixed_backends(now), registry=registry, clock=lambda: now)


async def prime(fleet: Fleet) -> None:
    """Poll every backend and the registry once, so the first frame shows everything."""
    for provider in fleet.providers:
        await fleet.poll(provider)
    await fleet.refresh_runs()


def fixed_app(fleet: Fleet, config: Config, workdir: Path, scene: str) -> RunctlApp:
    """The dashboard on a primed fixed fleet, not polling, with the scene's machine selected."""
    return RunctlApp(
        config,
        fleet=fleet,
        clock=lambda: FIXED_NOW,
        poll=False,
        state_path=workdir / f"state-{scene}.json",
        select=SCENES[scene][0] if scene in SCENES else LOCAL_KEY,
    )


async def wait_ready(pilot: Pilot[Any], timeout: float = 10.0) -> None:
    """Wait until the panes and any dialog show their data, then freeze the cursors.

    Args:
        pilot: The pilot of a `fixed_app`.
        timeout: Seconds before giving up (the picture is taken anyway).
    """
    from textual.widgets import Input, Select

    app = pilot.app
    deadline = time.monotonic() + timeout

    def ready() -> bool:
        screen = app.screen
        if isinstance(screen, CreateMachineScreen):
            offer = screen.query_one("#offer", Select)
            return offer.value is not Select.NULL
        if isinstance(screen, TerminateConfirmScreen):
            note = screen.query_one("#terminate-checkpoints")
            return "checking" not in str(note.render())
        base = app.screen_stack[0]
        browser = base.query("#checkpoints-widget")
        scanned = not browser or getattr(browser.first(), "scans", 1) >= 1
        log = base.query("#log-widget")
        view = log.first() if log else None
        if getattr(view, "source", None) is None:
            return scanned
        buffer = getattr(view, "buffer", None)
        return scanned and (buffer is None or buffer.total > 0)

    while not ready() and time.monotonic() < deadline:
        await pilot.pause(0.05)
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause(0.3)


async def render_all(out_dir: Path, workdir: Path = SHOTS_DIR) -> list[Path]:
    """Render every picture into `out_dir`.

    Args:
        out_dir: Where the SVGs go.
        workdir: The folder for the fixed state (a fixed path: it shows in the pictures).

    Returns:
        The files written.
    """
    os.environ["TZ"] = "UTC"
    time.tzset()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    config = Config()
    fleet = fixed_fleet(config, workdir)
    await prime(fleet)
    for width, height in SIZES:
        for scene, (_, keys) in SCENES.items():
            app = fixed_app(fleet, config, workdir, scene)
            async with app.run_test(size=(width, height)) as pilot:
                await pilot.pause()
                for key in keys:
                    await pilot.press(key)
                await wait_ready(pilot)
                path = out_dir / f"{scene}-{width}x{height}.svg"
                path.write_text(app.export_screenshot(title="runctl"), encoding="utf-8")
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; prints each file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("screenshots"))
    args = parser.parse_args(argv)
    for path in asyncio.run(render_all(args.out_dir)):
        print(path)
    shutil.rmtree(SHOTS_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
