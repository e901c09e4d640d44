"""Spend today across machines that are gone: a local ledger of billed intervals, and the sum.

The machines a provider lists now say nothing about a pod that ran from 01:00 to 05:00 and was
terminated. The dashboard therefore writes each billing machine's interval (start, last time
seen billing, $/h) to a small table beside the run registry (`machine_spend` in `runs.db`,
SQLite WAL, so the dashboard and `runctl` processes can write it at once), and closes it with
the exact time when runctl terminates or stops the machine itself.

`spend_since` adds it up per machine as the union of its intervals (a machine both listed now
and in the ledger, or recorded twice, is counted once), clipped to the day. Where a provider
reports what it billed per machine (RunPod's `GET /v2/billing/pods`), that figure is used
when it is the larger one (billing lags the running hour; local intervals miss disk costs and
whatever ran while no runctl was watching), and a figure from local intervals is an estimate.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runctl_tui.core import paths
from runctl_tui.core.errors import RunctlError
from runctl_tui.core.models import Machine, Provider
from runctl_tui.core.sqlite_file import shared_transaction

KEEP_DAYS = 40
"""Intervals that ended longer ago than this are deleted (the ledger stays small)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS machine_spend (
    provider TEXT NOT NULL,
    machine_id TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    price_per_hour REAL NOT NULL,
    price_is_estimate INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL DEFAULT '',
    end_exact INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, machine_id, start)
)
"""


def local_midnight(now: float) -> float:
    """Epoch seconds of the last local midnight before `now`."""
    local = _dt.datetime.fromtimestamp(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


@dataclass(frozen=True)
class BilledInterval:
    """A stretch of time one machine billed at one price."""

    provider: Provider
    machine_id: str
    start: float
    """Epoch seconds the billing started (the machine's `started_at`)."""
    end: float
    """Epoch seconds it ended, or the last time it was seen billing."""
    price_per_hour: float
    price_is_estimate: bool = False
    name: str = ""
    end_exact: bool = False
    """True when runctl ended it itself (terminate/stop); False: last seen billing."""

    @property
    def key(self) -> str:
        """The machine's key (`runpod:abc`)."""
        return f"{self.provider.value}:{self.machine_id}"


def interval_of(machine: Machine, end: float, *, end_exact: bool = False) -> BilledInterval | None:
    """The interval a billing machine has accrued up to `end`; None when not priced or started.

    Args:
        machine: A cloud machine.
        end: Epoch seconds the interval ends (now, or when it was terminated).
        end_exact: Whether `end` is when it really stopped billing.
    """
    if (
        machine.provider is Provider.LOCAL
        or machine.price_per_hour is None
        or machine.started_at is None
    ):
        return None
    return BilledInterval(
        machine.provider,
        machine.id,
        machine.started_at,
        max(end, machine.started_at),
        machine.price_per_hour,
        machine.price_is_estimate,
        machine.name,
        end_exact,
    )


def default_ledger_path() -> Path:
    """The run registry's database, `$XDG_STATE_HOME/runctl/runs.db` (its own table)."""
    return paths.state_dir() / "runs.db"


class SpendLedger:
    """Billed intervals of cloud machines, kept across restarts.

    Args:
        path: The SQLite file (default `default_ledger_path()`); created on first use. Every
            call opens its own short connection: call from a thread in async code.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        self._initialised = False

    def _error(self, verb: str, exc: sqlite3.Error) -> RunctlError:
        return RunctlError(
            f"could not {verb} the spend ledger in {self.path} ({exc}); check that the file is "
            "readable and writable"
        )

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        paths.ensure_dir(self.path.parent)

        def prepare(conn: sqlite3.Connection) -> None:
            if not self._initialised:
                self.path.chmod(0o600)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(_SCHEMA)
                conn.execute("CREATE INDEX IF NOT EXISTS machine_spend_end ON machine_spend (end)")
                self._initialised = True

        with shared_transaction(self.path, self._error, write=write, prepare=prepare) as conn:
            yield conn

    def record(self, intervals: Iterable[BilledInterval]) -> None:
        """Add intervals, or extend those already recorded (same machine and start).

        An interval only ever grows: the later end and the newest price win, and once an end
        is exact it stays exact.
        """
        rows = [
            (
                i.provider.value,
                i.machine_id,
                i.start,
                i.end,
                i.price_per_hour,
                int(i.price_is_estimate),
                i.name,
                int(i.end_exact),
            )
            for i in intervals
        ]
        if not rows:
            return
        with self._connect(write=True) as conn:
            conn.executemany(
                "INSERT INTO machine_spend (provider, machine_id, start, end, price_per_hour, "
                "price_is_estimate, name, end_exact) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (provider, machine_id, start) DO UPDATE SET "
                "end = CASE WHEN machine_spend.end_exact = 1 AND excluded.end_exact = 0 "
                "THEN machine_spend.end ELSE max(machine_spend.end, excluded.end) END, "
                "price_per_hour = excluded.price_per_hour, "
                "price_is_estimate = excluded.price_is_estimate, name = excluded.name, "
                "end_exact = max(machine_spend.end_exact, excluded.end_exact)",
                rows,
            )
            oldest = max(r[3] for r in rows) - KEEP_DAYS * 86400
            conn.execute("DELETE FROM machine_spend WHERE end < ?", (oldest,))

    def since(self, start: float) -> list[BilledInterval]:
        """Intervals that were still billing after `start` (epoch seconds), oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT provider, machine_id, start, end, price_per_hour, price_is_estimate, "
                "name, end_exact FROM machine_spend WHERE end > ? ORDER BY start, provider, machine_id",
                (start,),
            ).fetchall()
        return [
            BilledInterval(Provider(p), m, s, e, price, bool(est), name, bool(exact))
            for p, m, s, e, price, est, name, exact in rows
        ]


def record_machine_end(machine: Machine, end: float, ledger: SpendLedger | None = None) -> None:
    """Record that runctl stopped or terminated `machine` at `end` (blocking: use a thread).

    Args:
        machine: The machine as last listed (its start and price).
        end: Epoch seconds it stopped billing.
        ledger: The ledger (default: the user's).
    """
    interval = interval_of(machine, end, end_exact=True)
    if interval is not None:
        (ledger or SpendLedger()).record([interval])


def union_cost(intervals: Iterable[BilledInterval], start: float, end: float) -> float:
    """$ of one machine's intervals between `start` and `end`, overlaps counted once.

    Where intervals overlap (the same billing seen twice), the higher price is used.
    """
    clipped = [
        (max(i.start, start), min(i.end, end), i.price_per_hour)
        for i in intervals
        if min(i.end, end) > max(i.start, start)
    ]
    if not clipped:
        return 0.0
    bounds = sorted({t for a, b, _ in clipped for t in (a, b)})
    total = 0.0
    for left, right in itertools.pairwise(bounds):
        prices = [p for a, b, p in clipped if a <= left and b >= right]
        if prices:
            total += (right - left) * max(prices) / 3600.0
    return total


@dataclass(frozen=True)
class SpendFigure:
    """Spend over a period, across machines."""

    total: float = 0.0
    is_estimate: bool = False
    """True when any machine's share comes from price x time rather than provider billing."""
    gone: float = 0.0
    """The part of `total` from machines no longer billing (terminated, stopped, vanished)."""


def spend_since(
    start: float,
    now: float,
    live: Iterable[BilledInterval],
    recorded: Iterable[BilledInterval],
    billed: Mapping[Provider, Mapping[str, float]] | None = None,
) -> SpendFigure:
    """$ spent between `start` and `now` per machine, each machine counted once.

    Args:
        start: Epoch seconds (local midnight for "today").
        now: Epoch seconds.
        live: The current interval of each machine billing now (ends now).
        recorded: Intervals from the ledger.
        billed: Per provider, $ the provider itself billed each machine since `start`.

    Returns:
        The total, whether it is an estimate, and the share of machines no longer billing.
    """
    by_machine: dict[str, list[BilledInterval]] = {}
    live_keys: set[str] = set()
    for interval in live:
        by_machine.setdefault(interval.key, []).append(interval)
        live_keys.add(interval.key)
    for interval in recorded:
        by_machine.setdefault(interval.key, []).append(interval)
    billed_by_key = {
        f"{provider.value}:{machine_id}": amount
        for provider, amounts in (billed or {}).items()
        for machine_id, amount in amounts.items()
    }
    total = gone = 0.0
    estimate = False
    for key in by_machine.keys() | billed_by_key.keys():
        local = union_cost(by_machine.get(key, ()), start, now)
        provider_amount = billed_by_key.get(key)
        if provider_amount is not None and provider_amount >= local:
            amount = provider_amount
        else:
            amount = local
            estimate = estimate or local > 0
        total += amount
        if key not in live_keys:
            gone += amount
    return SpendFigure(total, estimate, gone)
