# ruff: noqa: F811 - pytest fixtures imported from tests.moto_fixture
"""Spend today includes machines terminated earlier today, across restarts, and never yesterday.

RunPod is the loopback RunPod API server on a clock the test moves (pods run from 01:00 to
05:00); EC2 is moto in server mode through the real `AwsBackend`. The ledger is the real SQLite
table beside the run registry; each "restart" is a new `Fleet`, backend and registry object.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runctl_tui.core.backends.aws import AwsBackend
from runctl_tui.core.backends.runpod import RunPodBackend
from runctl_tui.core.config import Config
from runctl_tui.core.fleet import Fleet
from runctl_tui.core.models import CreateSpec, Machine, Provider
from runctl_tui.core.runs import RunRegistry
from runctl_tui.core.spend import (
    BilledInterval,
    SpendLedger,
    local_midnight,
    spend_since,
    union_cost,
)
from runctl_tui.testing.runpod_server import RunPodTestServer
from tests.helpers import Clock
from tests.moto_fixture import MotoServer, moto_aws, moto_server  # noqa: F401
from tests.runpod_fixture import runpod_config

KEY = "spend-test-key-0000001"
RTX_4090 = "NVIDIA GeForce RTX 4090"
HOUR = 3600.0


def interval(machine: str, start: float, end: float, price: float = 2.0) -> BilledInterval:
    return BilledInterval(Provider.AWS, machine, start, end, price)


def test_overlapping_records_of_one_machine_count_once_and_only_after_midnight() -> None:
    midnight = local_midnight(1_800_000_000.0)
    # Seen at 01:00-03:00, extended to 05:00, and recorded twice: four hours at $2/h.
    records = [
        interval("i-1", midnight + HOUR, midnight + 3 * HOUR),
        interval("i-1", midnight + HOUR, midnight + 5 * HOUR),
        interval("i-1", midnight + HOUR, midnight + 5 * HOUR),
    ]
    assert union_cost(records, midnight, midnight + 6 * HOUR) == pytest.approx(8.0)
    # 22:00 yesterday to 02:00 today: only the two hours after midnight.
    span = [interval("i-2", midnight - 2 * HOUR, midnight + 2 * HOUR)]
    assert union_cost(span, midnight, midnight + 6 * HOUR) == pytest.approx(4.0)
    yesterday = [interval("i-3", midnight - 5 * HOUR, midnight - HOUR)]
    figure = spend_since(midnight, midnight + 6 * HOUR, [], records + span + yesterday)
    assert figure.total == pytest.approx(12.0)
    assert figure.is_estimate and figure.gone == pytest.approx(12.0)
    # A machine listed now and also in the ledger: its live interval covers the recorded one.
    live = [interval("i-1", midnight + HOUR, midnight + 6 * HOUR)]
    figure = spend_since(midnight, midnight + 6 * HOUR, live, records)
    assert figure.total == pytest.approx(10.0) and figure.gone == 0.0
    # What the provider billed wins when larger (disk costs); a lagging bill does not.
    billed = {Provider.AWS: {"i-1": 10.5}}
    assert spend_since(midnight, midnight + 6 * HOUR, live, records, billed).total == 10.5
    assert not spend_since(midnight, midnight + 6 * HOUR, live, records, billed).is_estimate
    lagging = {Provider.AWS: {"i-1": 6.0}}
    lag = spend_since(midnight, midnight + 6 * HOUR, live, records, lagging)
    assert lag.total == pytest.approx(10.0) and lag.is_estimate


def test_the_ledger_keeps_an_exact_end_and_survives_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    ledger = SpendLedger(path)
    start = 1_800_000_000.0
    ledger.record([BilledInterval(Provider.RUNPOD, "p1", start, start + 100, 1.5, end_exact=True)])
    # A later poll that saw it billing slightly earlier never moves an exact end.
    ledger.record([BilledInterval(Provider.RUNPOD, "p1", start, start + 50, 1.5)])
    ledger.record([BilledInterval(Provider.RUNPOD, "p2", start, start + 10, 1.0)])
    ledger.record([BilledInterval(Provider.RUNPOD, "p2", start, start + 70, 1.0)])
    again = SpendLedger(path).since(start)
    assert [(i.machine_id, i.end, i.end_exact) for i in again] == [
        ("p1", start + 100, True),
        ("p2", start + 70, False),
    ]
    assert SpendLedger(path).since(start + 100) == []
    # It lives beside the run registry, which keeps working.
    assert RunRegistry(path).list() == []


# ---- RunPod ------------------------------------------------------------------------------


@pytest.fixture
def night() -> Iterator[tuple[RunPodTestServer, Clock]]:
    """A RunPod server whose clock starts at 22:00 yesterday (local time)."""
    clock = Clock(local_midnight(1_800_000_000.0) - 2 * HOUR)
    server = RunPodTestServer(api_key=KEY, step_seconds=None, step_polls=1, clock=clock).start()
    try:
        yield server, clock
    finally:
        server.stop()


def new_fleet(config: Config, provider: Provider, db: Path, clock: Clock) -> Fleet:
    """A dashboard's fleet as after a restart: new backend, registry and ledger objects."""
    backend = RunPodBackend(config) if provider is Provider.RUNPOD else AwsBackend(config)
    return Fleet(config, backends={provider: backend}, registry=RunRegistry(db), clock=clock)


async def listed(fleet: Fleet, provider: Provider, pod_id: str) -> Machine:
    snapshot = await fleet.poll(provider)
    assert snapshot.error is None, snapshot.error
    return next(m for m in snapshot.machines if m.id == pod_id)


async def test_pods_terminated_today_count_after_a_restart_and_yesterdays_do_not(
    night: tuple[RunPodTestServer, Clock], tmp_path: Path
) -> None:
    server, clock = night
    config = runpod_config(server, KEY)
    db = tmp_path / "state" / "runs.db"
    midnight = clock.now + 2 * HOUR
    fleet = new_fleet(config, Provider.RUNPOD, db, clock)
    backend = fleet.backends[Provider.RUNPOD]
    await fleet.refresh_runs()

    # Yesterday 22:00-23:00: never today's spend.
    old = server.add_pod(name="yesterday", gpu_id=RTX_4090)
    await listed(fleet, Provider.RUNPOD, old.id)
    clock.now = midnight - HOUR
    await listed(fleet, Provider.RUNPOD, old.id)
    await backend.terminate(old.id)
    # 23:00 yesterday to 02:00 today, terminated outside the dashboard: seen gone.
    span = server.add_pod(name="span", gpu_id=RTX_4090)
    await listed(fleet, Provider.RUNPOD, span.id)
    # 01:00 to 05:00 today, terminated by the dashboard.
    clock.now = midnight + HOUR
    pod = server.add_pod(name="night", gpu_id=RTX_4090)
    machine = await listed(fleet, Provider.RUNPOD, pod.id)
    price = machine.price_per_hour
    assert price is not None and price > 0
    clock.now = midnight + 2 * HOUR
    await listed(fleet, Provider.RUNPOD, span.id)
    await backend.terminate(span.id)
    clock.now += 5
    await fleet.poll(Provider.RUNPOD)
    clock.now = midnight + 5 * HOUR
    machine = await listed(fleet, Provider.RUNPOD, pod.id)
    # Listed and in the ledger, counted once: span's 2 h after midnight + night's 4 h.
    totals = fleet.totals()
    assert totals.spend_today == pytest.approx(6 * price, rel=1e-6), totals
    assert totals.spend_gone == pytest.approx(2 * price, rel=1e-6), totals
    # The dashboard's terminate: the backend call, then the exact end in the ledger.
    await backend.terminate(pod.id)
    await fleet.record_end(machine)
    clock.now += 5
    await fleet.poll(Provider.RUNPOD)
    totals = fleet.totals()
    assert totals.spend_today == pytest.approx(6 * price, rel=0.01), totals
    assert totals.burn_per_hour == 0.0
    await fleet.aclose()

    # A restart at 06:00: nothing runs; RunPod's billing and the ledger both say 6 h.
    clock.now = midnight + 6 * HOUR
    restarted = new_fleet(config, Provider.RUNPOD, db, clock)
    await restarted.refresh_runs()
    assert (await restarted.poll(Provider.RUNPOD)).machines == ()
    totals = restarted.totals()
    # RunPod bills the disk too, so its figure is a little above price x time, and exact.
    assert 6 * price < totals.spend_today < 6 * price * 1.01, totals
    assert not totals.spend_is_estimate and totals.burn_per_hour == 0.0
    await restarted.aclose()

    # Billing unavailable: the ledger alone gives the same hours, marked as an estimate.
    server.faults.fail_path = "/v2/billing"
    server.faults.fail_next = 1000
    blind = new_fleet(config, Provider.RUNPOD, db, clock)
    await blind.refresh_runs()
    await blind.poll(Provider.RUNPOD)
    totals = blind.totals()
    assert totals.spend_today == pytest.approx(6 * price, rel=1e-6), totals
    assert totals.spend_is_estimate
    await blind.aclose()
    server.faults.fail_next = 0

    # The next day none of it is today's.
    clock.now = midnight + 30 * HOUR
    tomorrow = new_fleet(config, Provider.RUNPOD, db, clock)
    await tomorrow.refresh_runs()
    await tomorrow.poll(Provider.RUNPOD)
    assert tomorrow.totals().spend_today == 0.0
    await tomorrow.aclose()


# ---- EC2 (moto) --------------------------------------------------------------------------


async def test_an_instance_terminated_today_still_counts_after_a_restart(
    moto_aws: MotoServer, tmp_path: Path
) -> None:
    config = Config()
    db = tmp_path / "state" / "runs.db"
    created = await AwsBackend(config).create(CreateSpec(Provider.AWS, "g5.xlarge", name="day"))
    assert created.created_at is not None
    launched = created.created_at
    # The dashboard's clock three hours after the launch (moto launches at the real time).
    clock = Clock(launched + 3 * HOUR)
    fleet = new_fleet(config, Provider.AWS, db, clock)
    await fleet.refresh_runs()
    machine = await listed(fleet, Provider.AWS, created.id)
    assert machine.price_per_hour is not None and machine.started_at == launched
    price = machine.price_per_hour
    seen_billing = clock.now
    # Terminated outside the dashboard (`runctl aws terminate`): the backend itself records
    # the exact end in the user's ledger (real time here)...
    before = time.time()
    await AwsBackend(config).terminate(created.id)
    (own,) = [i for i in SpendLedger().since(0) if i.machine_id == created.id]
    assert own.end_exact and before <= own.end <= time.time() and own.start == launched
    assert own.price_per_hour == price
    # ...and this dashboard (its own ledger file, clock 3 h on) sees it end at the next poll.
    clock.now += 60
    gone = await listed(fleet, Provider.AWS, created.id)
    assert not gone.state.is_billing
    expected = price * (seen_billing - max(launched, local_midnight(clock.now))) / HOUR
    assert expected > 0
    totals = fleet.totals()
    assert totals.spend_today == pytest.approx(expected), totals
    assert totals.spend_is_estimate and totals.burn_per_hour == 0.0

    restarted = new_fleet(config, Provider.AWS, db, clock)
    await restarted.refresh_runs()
    await listed(restarted, Provider.AWS, created.id)
    assert restarted.totals().spend_today == pytest.approx(expected)

    clock.now = local_midnight(clock.now) + 24 * HOUR + 60
    tomorrow = new_fleet(config, Provider.AWS, db, clock)
    await tomorrow.refresh_runs()
    await tomorrow.poll(Provider.AWS)
    assert tomorrow.totals().spend_today == 0.0
