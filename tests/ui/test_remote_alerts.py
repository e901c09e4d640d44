"""A run on a pod whose loss goes NaN marks its machine's row and notifies, selected or not.

Whole-dashboard Pilot test over real pieces: the loopback RunPod API server publishes both pods'
SSH at Debian's sshd (this computer is the pods), `t` starts the real training script over SSH,
and the script prints a NaN loss only when the test says so (a flag file), so which path saw
it is known: the selected pod through the metrics pane's live stream, the other pod through
the fleet's periodic read of its log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.models import Provider
from runctl_tui.core.runs import RunRegistry
from runctl_tui.testing.runpod_server import RunPodTestServer
from runctl_tui.ui.app import RunctlApp
from runctl_tui.ui.screens import dashboard as dashboard_module
from runctl_tui.ui.screens.train_form import TrainFormScreen
from tests.runpod_fixture import runpod_server_over_sshd
from tests.ui.helpers import wait_for
from tests.ui.test_cloud_flows import (
    RP_KEY,
    RTX_4090,
    cell,
    dashboard,
    make_config,
    notes,
    pod_key,
    select_machine,
    table,
)

TRAIN = r"""
import sys, time
from pathlib import Path

flags = Path(sys.argv[1])
name = sys.argv[2]
for step in (1, 2, 3):
    print(f"step {step} loss {1.0 / step:.4f}", flush=True)
deadline = time.time() + 60
while not (flags / f"{name}.go").exists() and time.time() < deadline:
    time.sleep(0.1)
print("step 4 loss nan", flush=True)
print("step 5 loss nan", flush=True)
while not (flags / "stop").exists() and time.time() < deadline:
    time.sleep(0.1)
"""


@pytest.fixture
def pods(sshd_server: Any) -> Iterator[RunPodTestServer]:
    server = runpod_server_over_sshd(sshd_server, RP_KEY)
    server.add_pod(name="pod-a", gpu_id=RTX_4090)
    server.add_pod(name="pod-b", gpu_id=RTX_4090)
    try:
        yield server
    finally:
        server.stop()


async def train_on(pilot: Any, app: RunctlApp, key: str, flags: Path, name: str) -> None:
    """`t` on the pod: the script waits for `<name>.go` before printing a NaN loss."""
    before = len(RunRegistry().list())
    await select_machine(pilot, app, key)
    await wait_for(pilot, lambda: cell(app, key, "state").endswith("ready"), "ssh ready", 30)
    await pilot.press("t")
    await wait_for(pilot, lambda: isinstance(app.screen, TrainFormScreen), "train form")
    await pilot.press(*"train.py")
    await pilot.press("tab", *f"{flags} {name}")
    await pilot.press("enter")
    await wait_for(pilot, lambda: len(RunRegistry().list()) > before, f"run on {name}", 30)
    await wait_for(pilot, lambda: cell(app, key, "run").startswith("▶ running"), "run row", 30)


@pytest.mark.sshd
async def test_a_nan_loss_on_a_pod_marks_its_row_selected_or_not(
    pods: RunPodTestServer,
    sshd_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    flags = tmp_path / "flags"
    flags.mkdir()
    monkeypatch.chdir(project)
    # The fleet reads remote logs only at the start until part two (it would see pod-a too).
    monkeypatch.setattr(dashboard_module, "REMOTE_RUN_CHECK_SECONDS", 3600.0)
    config = make_config(runpod_url=pods.url)
    config.runpod.remote_dir = str(tmp_path / "pod-disk" / "project")
    config.runpod.ssh_key = str(sshd_server.key_path)
    app = RunctlApp(config, state_path=tmp_path / "dashboard.json")
    key_a, key_b = pod_key(pods, "pod-a"), pod_key(pods, "pod-b")
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_for(pilot, lambda: {key_a, key_b} <= set(table(app).shown_keys), "pods")
            await train_on(pilot, app, key_b, flags, "b")
            await train_on(pilot, app, key_a, flags, "a")

            # Selected: the metrics pane's live stream sees the NaN and marks the row.
            assert table(app).selected_key == key_a
            (flags / "a.go").touch()
            await wait_for(pilot, lambda: "diverged" in cell(app, key_a, "run"), "a marked", 15)
            await wait_for(
                pilot, lambda: any("diverged" in n and "pod-a" in n for n in notes(app)), "note a"
            )
            assert "diverged" not in cell(app, key_b, "run")

            # Not selected: pod-b's log is read by the fleet (every 30 s; 1 s here).
            monkeypatch.setattr(dashboard_module, "REMOTE_RUN_CHECK_SECONDS", 1.0)
            (flags / "b.go").touch()
            await wait_for(pilot, lambda: "diverged" in cell(app, key_b, "run"), "b marked", 30)
            assert table(app).selected_key == key_a, "pod-b was never selected again"
            note = next(n for n in notes(app) if "diverged" in n and "pod-b" in n)
            assert "NaN" in note or "nan" in note, note
            row = dashboard(app).fleet.find_row(key_b)
            assert row is not None and row.progress is not None and row.progress.step == 5
            assert Provider.RUNPOD in dashboard(app).fleet.backends
    finally:
        (flags / "stop").touch()
