"""The dashboard's metrics pane for a run on a RunPod pod: curves from the pod's log over SSH.

Real pieces throughout: the loopback RunPod API server publishes the pod's SSH at the sshd
fixture (this computer is the pod), the run is recorded in the real registry, and its log is
the bundled demo's real output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from runctl_tui.core.config import Config
from runctl_tui.core.models import Provider, Run, RunStatus
from runctl_tui.core.runs import RunRegistry, new_run_id
from runctl_tui.ui.app import RunctlApp
from runctl_tui.ui.panes import Pane
from runctl_tui.ui.widgets.machines_table import MachinesTable
from runctl_tui.ui.widgets.metrics_panel import MetricsPanel
from tests.runpod_fixture import runpod_server_over_sshd
from tests.sshd_fixture import SshServer

API_KEY = "remote-metrics-test-key-0001"
DEMO = Path(__file__).resolve().parents[2] / "runctl_tui" / "examples" / "train_demo.py"


async def wait_for(
    pilot: Pilot[Any],
    condition: Callable[[], bool],
    what: str,
    detail: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {detail()}"
        await pilot.pause(0.05)


def demo_log(tmp_path: Path) -> Path:
    """The bundled demo's real console output, where the "pod" keeps its log."""
    log = tmp_path / "pod-disk" / "runs" / "train.log"
    log.parent.mkdir(parents=True)
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, str(DEMO), "--sleep", "0", "--checkpoint-dir", str(tmp_path / "ck")],
            cwd=tmp_path,
            stdout=out,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            check=True,
            timeout=60,
        )
    return log


async def test_pod_run_shows_curves_from_its_remote_log(
    sshd_server: SshServer, tmp_path: Path
) -> None:
    log = demo_log(tmp_path)
    server = runpod_server_over_sshd(sshd_server, API_KEY)
    try:
        pod = server.add_pod(name="trainer-a", gpu_id="NVIDIA GeForce RTX 4090")
        run = Run(
            id=new_run_id(),
            backend=Provider.RUNPOD,
            machine=pod.id,
            script="train.py",
            args=(),
            cwd="/workspace/project",
            status=RunStatus.RUNNING,
            started=time.time(),
            log_path=str(log),
            checkpoint_dir=str(tmp_path / "ck"),
        )
        RunRegistry().add(run)
        config = Config()
        config.monitor.poll_seconds = 0.2
        config.ui.bell = False
        config.runpod.api_key = API_KEY
        config.runpod.api_url = server.url
        config.runpod.ssh_key = str(sshd_server.key_path)
        config.runpod.max_retries = 0
        app = RunctlApp(config, state_path=tmp_path / "dashboard.json")
        key = f"runpod:{pod.id}"
        async with app.run_test(size=(120, 40)) as pilot:
            machines = app.screen.query_one(MachinesTable)
            await wait_for(pilot, lambda: key in machines.shown_keys, "the pod's row")
            machines.focus()
            for _ in range(len(machines.shown_keys) + 1):
                if machines.selected_key == key:
                    break
                await pilot.press("down")
            assert machines.selected_key == key
            panel = app.screen.query_one("#metrics-widget", MetricsPanel)

            def loss_points() -> int:
                data = panel._data.get("loss")
                return len(data[1]) if data else 0

            await wait_for(
                pilot,
                lambda: loss_points() == 300,
                "300 loss points over SSH",
                lambda: str(panel.render()),
            )
            assert app.screen.query_one("#metrics-pane", Pane).border_subtitle == run.id
            rendered = str(panel.render())
            assert f"{sshd_server.host}:{log} · " in rendered
            assert panel.shown[0] == "loss" and panel.alerts == []
            # The curve keeps following the remote log.
            with log.open("a") as out:
                out.write("epoch 6/5 step 301 loss=0.0500 lr=0.0500\n")
            await wait_for(pilot, lambda: loss_points() == 301, "the appended point")
    finally:
        server.stop()
