"""SVG snapshots of the dashboard at 80x24 and 160x48, each paired with an assertion.

The state is the fixed one `runctl_tui.ui.screenshots` renders for the README: frozen clock,
fixed machines, and a real run of the bundled example. Update with `--snapshot-update` after
checking the new pictures by eye.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import Fleet
from runctl_tui.ui.screens.create_machine import CreateMachineScreen
from runctl_tui.ui.screens.dashboard import DashboardScreen
from runctl_tui.ui.screens.terminate_confirm import TerminateConfirmScreen
from runctl_tui.ui.screenshots import SHOTS_DIR, SIZES, fixed_app, fixed_fleet, prime, wait_ready
from runctl_tui.ui.widgets.machines_table import MachinesTable

ALL_MACHINES = [
    "aws:i-09f8e7d6c5b4a3921",
    "aws:i-0a1b2c3d4e5f60718",
    "local:local",
    "runpod:b7f2c9d1e0",
    "runpod:k3x9pq2m7a",
]


@pytest.fixture(scope="module")
def fixed() -> Iterator[tuple[Config, Fleet]]:
    """The fixed fleet, primed once, in UTC."""
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    config = Config()
    fleet = fixed_fleet(config, SHOTS_DIR)
    asyncio.run(prime(fleet))
    yield config, fleet
    if old_tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old_tz
    time.tzset()


def base(pilot: Pilot[Any]) -> DashboardScreen:
    screen = pilot.app.screen_stack[0]
    assert isinstance(screen, DashboardScreen)
    return screen


@pytest.mark.parametrize("size", SIZES)
def test_dashboard(snap_compare: Any, fixed: tuple[Config, Fleet], size: tuple[int, int]) -> None:
    config, fleet = fixed
    seen: dict[str, Any] = {}

    async def before(pilot: Pilot[Any]) -> None:
        await wait_ready(pilot)
        screen = base(pilot)
        seen["rows"] = screen.query_one(MachinesTable).shown_keys
        seen["header"] = str(screen.query_one("#header").render())
        seen["tabbed"] = screen.has_class("-tabbed")

    assert snap_compare(
        fixed_app(fleet, config, SHOTS_DIR, "dashboard"), terminal_size=size, run_before=before
    )
    assert seen["rows"] == ALL_MACHINES
    assert "burn ~$2.60/h" in seen["header"]
    assert seen["tabbed"] is (size == (80, 24)), "tabs only when the terminal is small"


@pytest.mark.parametrize("size", SIZES)
def test_create_form(snap_compare: Any, fixed: tuple[Config, Fleet], size: tuple[int, int]) -> None:
    config, fleet = fixed
    seen: dict[str, Any] = {}

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("c")
        await wait_ready(pilot)
        form = pilot.app.screen
        assert isinstance(form, CreateMachineScreen)
        seen["price"] = str(form.query_one("#create-price").render())
        seen["confirm_disabled"] = form.query_one("#confirm", Button).disabled

    assert snap_compare(
        fixed_app(fleet, config, SHOTS_DIR, "create"), terminal_size=size, run_before=before
    )
    assert "$0.69/h" in seen["price"]
    assert seen["confirm_disabled"] is False


@pytest.mark.parametrize("size", SIZES)
def test_terminate_confirmation(
    snap_compare: Any, fixed: tuple[Config, Fleet], size: tuple[int, int]
) -> None:
    config, fleet = fixed
    seen: dict[str, Any] = {}

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("x")
        await wait_ready(pilot)
        modal = pilot.app.screen
        assert isinstance(modal, TerminateConfirmScreen)
        seen["expected"] = modal.expected
        seen["summary"] = str(modal.query_one("#terminate-summary").render())
        seen["confirm_disabled"] = modal.query_one("#confirm", Button).disabled

    assert snap_compare(
        fixed_app(fleet, config, SHOTS_DIR, "terminate"), terminal_size=size, run_before=before
    )
    assert seen["expected"] == "llama-ft"
    assert "accrued $7.18" in seen["summary"]
    assert seen["confirm_disabled"] is True, "confirming needs the typed name"
