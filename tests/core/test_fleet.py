"""The dashboard's core: building backends, polling with per-provider errors, totals, memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core import fleet as fleet_module
from runctl_tui.core.config import Config
from runctl_tui.core.fleet import (
    Fleet,
    build_backends,
    compute_totals,
    configured_providers,
    join_runs,
    spend_today,
)
from runctl_tui.core.models import Machine, MachineState, Provider, Run, RunStatus
from runctl_tui.core.runs import RunRegistry
from runctl_tui.core.session_state import (
    SessionState,
    TrainFormValues,
    load_session_state,
    save_session_state,
)
from runctl_tui.testing.runpod_server import RunPodTestServer
from tests.runpod_fixture import runpod_config

KEY = "fleet-test-key-000001"


@pytest.fixture
def server() -> Iterator[RunPodTestServer]:
    srv = RunPodTestServer(api_key=KEY, step_seconds=None, step_polls=1).start()
    srv.add_pod(name="alpha")
    try:
        yield srv
    finally:
        srv.stop()


def test_providers_follow_the_configuration() -> None:
    config = Config()
    assert configured_providers(config, {}) == [Provider.LOCAL]
    config.runpod.api_key = KEY
    assert configured_providers(config, {}) == [Provider.LOCAL, Provider.RUNPOD]
    assert Provider.AWS in configured_providers(config, {"AWS_PROFILE": "work"})
    assert Provider.AWS in configured_providers(config, {"AWS_ENDPOINT_URL": "http://x"})


def test_a_backend_that_cannot_be_built_is_a_per_provider_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = Config()
    config.runpod.api_key = KEY
    monkeypatch.setitem(
        fleet_module.BACKEND_CLASSES, Provider.AWS, ("runctl_tui.core.no_such_backend", "X")
    )
    backends, errors = build_backends(config, {"AWS_REGION": "us-east-1"})
    assert set(backends) == {Provider.LOCAL, Provider.RUNPOD}
    assert set(errors) == {Provider.AWS}
    assert "aws backend unavailable" in errors[Provider.AWS]
    fleet = Fleet(config, environ={"AWS_REGION": "us-east-1"})
    fleet.build()
    assert fleet.providers == [Provider.LOCAL, Provider.RUNPOD, Provider.AWS]
    assert fleet.snapshots[Provider.AWS].error is not None


async def test_a_failing_poll_keeps_the_last_machines_and_counts_failures(
    server: RunPodTestServer, tmp_path: Path
) -> None:
    config = runpod_config(server, KEY)
    fleet = Fleet(config, registry=RunRegistry(tmp_path / "runs.db"))
    fleet.build()
    first = await fleet.poll(Provider.RUNPOD)
    assert first.error is None
    assert [m.name for m in first.machines] == ["alpha"]
    server.fail_next(10, 500)
    second = await fleet.poll(Provider.RUNPOD)
    assert second.error
    assert KEY not in second.error
    assert second.failures == 1
    assert [m.name for m in second.machines] == ["alpha"], "stale data stays, marked"
    assert second.fetched_at == first.fetched_at
    local = await fleet.poll(Provider.LOCAL)
    assert local.error is None, "one provider's failure does not touch another"
    await fleet.aclose()


def _machine(provider: Provider, mid: str, state: MachineState, **kw: object) -> Machine:
    return Machine(provider, mid, mid, state, **kw)  # type: ignore[arg-type]


def test_totals_sum_billing_machines_and_count_unpriced() -> None:
    now = dt.datetime(2026, 11, 29, 12, 0).timestamp()
    machines = [
        _machine(Provider.RUNPOD, "a", MachineState.RUNNING, price_per_hour=2.0,
                 started_at=now - 3 * 3600),
        _machine(Provider.AWS, "b", MachineState.RUNNING, price_per_hour=1.0,
                 price_is_estimate=True, started_at=now - 20 * 3600),
        _machine(Provider.RUNPOD, "c", MachineState.STOPPED, price_per_hour=5.0),
        _machine(Provider.AWS, "d", MachineState.PROVISIONING),
        _machine(Provider.LOCAL, "local", MachineState.RUNNING),
    ]  # fmt: skip
    totals = compute_totals(machines, now)
    assert totals.burn_per_hour == pytest.approx(3.0)
    assert totals.burn_is_estimate
    assert totals.unpriced == 1
    # a: 3 h x $2; b: since local midnight only (12 h x $1), not its 20 h of uptime.
    assert totals.spend_today == pytest.approx(6.0 + 12.0)
    assert spend_today(machines[2], now) == 0.0


def _run(run_id: str, machine: str, started: float, status: RunStatus) -> Run:
    return Run(run_id, Provider.RUNPOD, machine, "t.py", (), "/w", status, started, "l", "c")


def test_each_machine_gets_its_newest_run() -> None:
    a = _machine(Provider.RUNPOD, "a", MachineState.RUNNING)
    b = _machine(Provider.RUNPOD, "b", MachineState.RUNNING)
    runs = [
        _run("new", "a", 20.0, RunStatus.RUNNING),
        _run("old", "a", 10.0, RunStatus.FAILED),
    ]
    rows = join_runs([a, b], runs)
    assert rows[0].run is not None
    assert rows[0].run.id == "new"
    assert rows[1].run is None


def test_session_state_round_trips_and_survives_corruption(tmp_path: Path) -> None:
    path = tmp_path / "state" / "dashboard.json"
    assert load_session_state(path) == SessionState()
    state = SessionState("runpod:abc", TrainFormValues("train.py", "--lr 1e-3", "ck"))
    save_session_state(state, path)
    assert load_session_state(path) == state
    path.write_text("{not json", encoding="utf-8")
    assert load_session_state(path) == SessionState()


async def test_an_untouched_registry_with_nothing_running_is_not_queried_again(
    tmp_path: Path,
) -> None:
    """Left open for days, the dashboard re-reads the run registry only when a process wrote
    it (a stat of its files) or a run is running; a run added by another process shows."""
    config = Config()
    config.runpod.api_key = ""
    registry = RunRegistry(tmp_path / "runs.db")
    registry.add(_run("done", "pod-a", 10.0, RunStatus.SUCCEEDED))
    fleet = Fleet(config, registry=registry)
    fleet.build()
    lists = 0
    real_list = registry.list

    def counting_list(*args: Any, **kwargs: Any) -> list[Run]:
        nonlocal lists
        lists += 1
        return real_list(*args, **kwargs)

    registry.list = counting_list  # type: ignore[method-assign]
    assert await fleet.refresh_runs()
    read = lists
    for _ in range(5):
        assert not await fleet.refresh_runs()
    assert lists == read, "no process wrote the registry and nothing runs"
    RunRegistry(tmp_path / "runs.db").add(_run("fresh", "pod-b", 20.0, RunStatus.RUNNING))
    assert await fleet.refresh_runs()
    assert [run.id for run in fleet.runs] == ["fresh", "done"]
    queried = lists
    await fleet.refresh_runs()
    assert lists > queried, "a running run is followed on every refresh"
    await fleet.aclose()
