"""The header's spend today keeps a pod the dashboard terminated, after a restart.

Whole dashboard over the loopback RunPod API server on a clock the test moves: a pod runs from
01:00 to 05:00 and is terminated with `x` (typed name); a new dashboard at 06:00 still shows its
four hours, exact from RunPod's billing, or as an estimate (`~`) from the local ledger when
billing cannot be read.
"""

from __future__ import annotations

from pathlib import Path

from runctl_tui.core.spend import local_midnight
from runctl_tui.testing.runpod_server import RunPodTestServer
from runctl_tui.ui.app import RunctlApp
from runctl_tui.ui.screens.terminate_confirm import TerminateConfirmScreen
from runctl_tui.ui.widgets.header_bar import HeaderBar
from runctl_tui.ui.widgets.machines_table import fmt_money
from tests.helpers import Clock
from tests.ui.helpers import wait_for
from tests.ui.test_cloud_flows import (
    RP_KEY,
    RTX_4090,
    dashboard,
    make_config,
    notes,
    select_machine,
    table,
)

HOUR = 3600.0


def header(app: RunctlApp) -> str:
    return str(dashboard(app).query_one(HeaderBar).render())


async def test_a_pod_terminated_at_five_still_counts_after_a_restart(tmp_path: Path) -> None:
    clock = Clock(local_midnight(1_800_000_000.0) + HOUR)
    server = RunPodTestServer(api_key=RP_KEY, step_seconds=None, step_polls=1, clock=clock).start()
    try:
        pod = server.add_pod(name="night", gpu_id=RTX_4090)
        key = f"runpod:{pod.id}"
        config = make_config(runpod_url=server.url)
        app = RunctlApp(config, clock=clock, state_path=tmp_path / "dashboard.json")
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: key in table(app).shown_keys, "pod row")
            row = dashboard(app).fleet.find_row(key)
            assert row is not None and row.machine.price_per_hour
            price = row.machine.price_per_hour
            clock.now += 4 * HOUR  # 05:00
            four_hours = f"today ~{fmt_money(4 * price)}"
            await wait_for(pilot, lambda: four_hours in header(app), "four hours in the header")
            await select_machine(pilot, app, key)
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, TerminateConfirmScreen), "dialog")
            await pilot.press(*"night", "enter")
            await wait_for(pilot, lambda: any("terminated." in n for n in notes(app)), "done")
            await wait_for(pilot, lambda: key not in table(app).shown_keys, "row gone")
            assert "burn $0.00/h" in header(app), header(app)
            assert four_hours in header(app), header(app)

        clock.now += HOUR  # 06:00, a new dashboard
        billed = sum(
            (b - a) for a, b in server.pods[pod.id].billed_seconds
        )  # RunPod's own record of the running time
        assert billed == 4 * HOUR
        again = RunctlApp(config, clock=clock, state_path=tmp_path / "dashboard.json")
        async with again.run_test(size=(120, 36)) as pilot:
            await wait_for(
                pilot, lambda: "runpod ✓" in header(again) and "today $" in header(again), "billed"
            )
            shown = header(again).split("today ", 1)[1].split()[0]
            # RunPod bills the disk as well: a little above 4 h x price, and not marked `~`.
            assert 4 * price <= float(shown.lstrip("$")) <= 4 * price * 1.01 + 0.01, shown

        server.faults.fail_path = "/v2/billing"
        server.faults.fail_next = 1000
        blind = RunctlApp(config, clock=clock, state_path=tmp_path / "dashboard.json")
        async with blind.run_test(size=(120, 36)) as pilot:
            await wait_for(
                pilot,
                lambda: f"today ~{fmt_money(4 * price)}" in header(blind),
                "the ledger's estimate",
            )
    finally:
        server.stop()
