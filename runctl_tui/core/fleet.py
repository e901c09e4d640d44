"""The fleet: every configured backend, their machines, and the newest run on each.

Plain Python (no UI). The dashboard calls `Fleet.poll(provider)` from one worker per backend,
so a slow or failing provider never holds up the others; a backend that cannot even be built
(missing SDK, bad config) becomes a per-provider error instead of an exception.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runctl_tui.core.backends.base import Backend
from runctl_tui.core.config import Config
from runctl_tui.core.logging_setup import get_logger
from runctl_tui.core.models import Machine, Provider, Run, RunStatus
from runctl_tui.core.remote_progress import RemoteLogTail
from runctl_tui.core.runs import RunRegistry
from runctl_tui.core.secrets import scrub
from runctl_tui.core.spend import (
    BilledInterval,
    SpendLedger,
    interval_of,
    local_midnight,
    spend_since,
)
from runctl_tui.core.ssh_ready import SshReadiness, SshState, wants_probe

_log = get_logger("fleet")

#: Where each backend class lives; imported only when the provider is configured.
BACKEND_CLASSES: dict[Provider, tuple[str, str]] = {
    Provider.LOCAL: ("runctl_tui.core.backends.local", "LocalBackend"),
    Provider.RUNPOD: ("runctl_tui.core.backends.runpod", "RunPodBackend"),
    Provider.AWS: ("runctl_tui.core.backends.aws", "AwsBackend"),
}

_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION")


def runpod_configured(config: Config) -> bool:
    """Whether a RunPod API key is configured (file or `RUNPOD_API_KEY`)."""
    return bool(config.runpod.api_key)


def aws_configured(config: Config, environ: Mapping[str, str] | None = None) -> bool:
    """Whether AWS is configured in `[aws]` or through boto3's endpoint/profile/region variables."""
    env = os.environ if environ is None else environ
    aws = config.aws
    return bool(aws.region or aws.profile or aws.endpoint_url) or any(env.get(n) for n in _AWS_ENV)


def configured_providers(
    config: Config, environ: Mapping[str, str] | None = None
) -> list[Provider]:
    """The providers the dashboard should show: local always, clouds when configured."""
    providers = [Provider.LOCAL]
    if runpod_configured(config):
        providers.append(Provider.RUNPOD)
    if aws_configured(config, environ):
        providers.append(Provider.AWS)
    return providers


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return scrub(text)


def build_backends(
    config: Config, environ: Mapping[str, str] | None = None
) -> tuple[dict[Provider, Backend], dict[Provider, str]]:
    """Build one backend per configured provider, each imported lazily.

    Args:
        config: The effective configuration.
        environ: Environment to detect AWS settings in (default `os.environ`).

    Returns:
        The backends that could be built, and an error sentence for each that could not.
    """
    backends: dict[Provider, Backend] = {}
    errors: dict[Provider, str] = {}
    for provider in configured_providers(config, environ):
        module_name, class_name = BACKEND_CLASSES[provider]
        try:
            module = importlib.import_module(module_name)
            backend = getattr(module, class_name)(config)
        except Exception as exc:
            _log.warning("backend %s unavailable: %s", provider.value, _error_text(exc))
            errors[provider] = f"{provider.value} backend unavailable: {_error_text(exc)}"
            continue
        backends[provider] = backend
    return backends, errors


@dataclass(frozen=True)
class ProviderSnapshot:
    """What one backend last said, and how fresh that is."""

    provider: Provider
    machines: tuple[Machine, ...] = ()
    """The machines from the last successful poll (kept while later polls fail)."""
    error: str | None = None
    """The last poll's error sentence; None when the last poll succeeded."""
    fetched_at: float | None = None
    """Epoch seconds of the last successful poll; None before the first."""
    attempted_at: float | None = None
    """Epoch seconds of the last poll, successful or not."""
    failures: int = 0
    """Consecutive failed polls, for backoff."""


@dataclass(frozen=True)
class RunProgress:
    """How far a run has got, from its metrics."""

    step: int | None = None
    total: int | None = None
    steps_per_second: float | None = None
    eta_seconds: float | None = None
    loss: float | None = None
    last_point_at: float | None = None
    """Epoch seconds when a new metric point last arrived."""
    alert: str | None = None
    """`diverged` or `stalled` when the metrics package raises an alert, else None."""
    alert_message: str | None = None
    """The alert's sentence (e.g. `loss is NaN at step 120`)."""


@dataclass(frozen=True)
class FleetRow:
    """One machine with the newest run on it."""

    machine: Machine
    run: Run | None = None
    progress: RunProgress | None = None
    ssh: SshState | None = None
    """Whether the running machine answers SSH yet; None when not checked (not running, no
    direct SSH, or not polled)."""

    @property
    def key(self) -> str:
        """The machine's key across providers (`runpod:abc`)."""
        return self.machine.key


@dataclass(frozen=True)
class FleetTotals:
    """Cost figures across providers."""

    burn_per_hour: float = 0.0
    """$/h of every machine that is billing now."""
    burn_is_estimate: bool = False
    """True when any price in the sum comes from a shipped table."""
    spend_today: float = 0.0
    """$ accrued since local midnight, machines terminated or stopped since then included."""
    unpriced: int = 0
    """Billing cloud machines whose price is unknown (left out of the sums)."""
    spend_is_estimate: bool = False
    """True when part of `spend_today` is price x time rather than what a provider billed."""
    spend_gone: float = 0.0
    """The part of `spend_today` from machines that no longer bill (terminated, stopped)."""


def join_runs(machines: Iterable[Machine], runs: Sequence[Run]) -> list[FleetRow]:
    """Pair each machine with its newest run.

    Args:
        machines: Machines from every backend.
        runs: Runs from the registry, newest first.

    Returns:
        One row per machine, in the order given.
    """
    newest: dict[tuple[Provider, str], Run] = {}
    for run in runs:
        newest.setdefault((run.backend, run.machine), run)
    return [FleetRow(m, newest.get((m.provider, m.id))) for m in machines]


def _midnight(now: float) -> float:
    return local_midnight(now)


def spend_today(machine: Machine, now: float) -> float | None:
    """$ this machine accrued since local midnight, from its price and uptime.

    Returns:
        The amount, 0 when not billing, None when the price or start time is unknown.
    """
    if not machine.state.is_billing:
        return 0.0
    if machine.price_per_hour is None or machine.started_at is None:
        return None
    start = max(machine.started_at, _midnight(now))
    return max(0.0, now - start) * machine.price_per_hour / 3600.0


def compute_totals(
    machines: Iterable[Machine],
    now: float,
    *,
    recorded: Iterable[BilledInterval] = (),
    billed: Mapping[Provider, Mapping[str, float]] | None = None,
) -> FleetTotals:
    """Burn rate across the machines listed now, and spend today including machines gone.

    Args:
        machines: Every machine shown.
        now: Epoch seconds.
        recorded: Billed intervals from the spend ledger (machines terminated or stopped).
        billed: Per provider, $ it billed each machine since local midnight, where it says.

    Returns:
        The totals; machines with an unknown price are counted in `unpriced`, not guessed.
    """
    burn = 0.0
    estimate = False
    unpriced = 0
    live: list[BilledInterval] = []
    for machine in machines:
        if not machine.state.is_billing:
            continue
        if machine.price_per_hour is None:
            if machine.provider is not Provider.LOCAL:
                unpriced += 1
            continue
        burn += machine.price_per_hour
        estimate = estimate or machine.price_is_estimate
        interval = interval_of(machine, now)
        if interval is not None:
            live.append(interval)
    today = spend_since(_midnight(now), now, live, recorded, billed)
    return FleetTotals(burn, estimate, today.total, unpriced, today.is_estimate, today.gone)


LEDGER_WRITE_SECONDS = 60.0
"""How often a billing machine's interval in the spend ledger is extended (its last-seen time)."""
LEDGER_RELOAD_SECONDS = 30.0
"""How often the ledger is re-read for what other processes recorded (`runctl ... terminate`)."""
RUNS_REREAD_SECONDS = 60.0
"""The run registry is read at least this often even when its files look untouched."""

_LOSS_NAMES = ("loss", "train_loss", "train/loss", "training_loss", "loss_step")
ALERT_WORDS = {"nonfinite": "diverged", "divergence": "diverged", "stall": "stalled"}
"""The word a metrics alert puts in the machine's row."""


@dataclass
class _ProgressState:
    tracker: Any
    samples: list[tuple[float, int]] = field(default_factory=list)
    last_step: int | None = None


class ProgressReader:
    """Progress of runs, read incrementally by the metrics package (`MetricsTracker`).

    Args:
        config: `[monitor]` settings: extra regexes, stall and divergence thresholds.
        clock: Epoch-seconds clock (injectable for deterministic pictures).
    """

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._clock = clock
        self._states: dict[str, _ProgressState] = {}
        self.unavailable: str | None = None
        """Why progress cannot be read (metrics package missing), else None."""

    def _state_for(self, run: Run) -> _ProgressState | None:
        state = self._states.get(run.id)
        if state is not None:
            return state
        try:
            metrics = importlib.import_module("runctl_tui.core.metrics")
            log = Path(run.log_path)
            tracker = metrics.MetricsTracker(
                log.parent,
                extra_paths=(log,),
                patterns=tuple(self._config.monitor.metrics_regex),
                clock=self._clock,
            )
        except Exception as exc:
            self.unavailable = f"run progress unavailable: {_error_text(exc)}"
            return None
        state = _ProgressState(tracker)
        self._states[run.id] = state
        return state

    def read(self, run: Run) -> RunProgress | None:
        """Poll the run's metrics (blocking file I/O: call from a thread) and summarise.

        Args:
            run: The run; its folder (`log_path`'s parent) and log are read.

        Returns:
            The progress, or None when nothing is known yet.
        """
        state = self._state_for(run)
        if state is None:
            return None
        try:
            state.tracker.poll()
        except Exception as exc:
            _log.info("metrics of %s unreadable: %s", run.id, _error_text(exc))
        return self.summarise(state, run)

    def summarise(self, state: _ProgressState, run: Run) -> RunProgress | None:
        """Step, rate, ETA, loss and alerts from a tracker's series (a `MetricsTracker` or a
        `MetricsStream`: anything with `series`, `last_point_at` and `alerts(...)`).

        Returns:
            The progress, or None when nothing is known yet.
        """
        now = self._clock()
        tracker = state.tracker
        series: Mapping[str, Any] = tracker.series
        step = _latest_step(series)
        loss_series = _loss_series(series)
        loss = loss_series.last if loss_series is not None else None
        if step is not None and step != state.last_step:
            state.last_step = step
            state.samples.append((now, step))
            del state.samples[:-20]
        rate = _rate(state.samples)
        total = _total_steps(run)
        eta = None
        if rate and total is not None and step is not None and total > step:
            eta = (total - step) / rate
        alert: str | None = None
        alert_message: str | None = None
        try:
            alerts = tracker.alerts(
                divergence_factor=self._config.monitor.divergence_factor,
                stall_seconds=self._config.monitor.stall_seconds,
                running=run.status is RunStatus.RUNNING,
                now=now,
            )
        except Exception as exc:
            _log.info("metrics alerts of %s failed: %s", run.id, _error_text(exc))
            alerts = []
        if alerts:
            alert = ALERT_WORDS.get(alerts[0].kind, alerts[0].kind)
            alert_message = alerts[0].message
        if step is None and loss is None and alert is None:
            return None
        return RunProgress(
            step, total, rate, eta, loss, tracker.last_point_at, alert, alert_message
        )

    def forget(self, keep: Iterable[str]) -> None:
        """Drop trackers of runs not in `keep` (bounded memory over days)."""
        wanted = set(keep)
        for run_id in list(self._states):
            if run_id not in wanted:
                del self._states[run_id]


def _loss_series(series: Mapping[str, Any]) -> Any | None:
    for name in _LOSS_NAMES:
        if name in series and len(series[name]):
            return series[name]
    for name, found in series.items():
        lowered = name.lower()
        if "loss" in lowered and not lowered.startswith(("val", "eval", "test")) and len(found):
            return found
    return None


def _latest_step(series: Mapping[str, Any]) -> int | None:
    best: int | None = None
    for found in series.values():
        value = getattr(found, "last_step", None)
        if value is not None and math.isfinite(value) and getattr(found, "name", "") != "epoch":
            step = int(value)
            best = step if best is None else max(best, step)
    return best


def _flag_value(args: Sequence[str], flags: tuple[str, ...]) -> int | None:
    for index, arg in enumerate(args):
        for flag in flags:
            text = None
            if arg == flag and index + 1 < len(args):
                text = args[index + 1]
            elif arg.startswith(flag + "="):
                text = arg.split("=", 1)[1]
            if text is not None and text.isdigit():
                return int(text)
    return None


def _total_steps(run: Run) -> int | None:
    """Total steps where the run's arguments say (`--max-steps`, or epochs x steps per epoch)."""
    args = list(run.args)
    total = _flag_value(args, ("--steps", "--max-steps", "--max_steps", "--total-steps"))
    if total:
        return total
    epochs = _flag_value(args, ("--epochs", "--num-epochs", "--num_train_epochs"))
    per_epoch = _flag_value(args, ("--steps-per-epoch", "--steps_per_epoch"))
    if epochs and per_epoch:
        return epochs * per_epoch
    return None


def _rate(samples: Sequence[tuple[float, int]]) -> float | None:
    if len(samples) < 2:
        return None
    (t0, s0), (t1, s1) = samples[0], samples[-1]
    if t1 <= t0 or s1 <= s0:
        return None
    return (s1 - s0) / (t1 - t0)


class Fleet:
    """The backends, the run registry and the last answer of each, for the dashboard.

    Args:
        config: The effective configuration.
        backends: Backends to use instead of building them from `config` (for fixed states).
        registry: The run registry (default: the user's).
        clock: Epoch-seconds clock.
        environ: Environment used to detect AWS settings.
    """

    def __init__(
        self,
        config: Config,
        *,
        backends: Mapping[Provider, Backend] | None = None,
        registry: RunRegistry | None = None,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._environ = environ
        self.backends: dict[Provider, Backend] = {}
        self.snapshots: dict[Provider, ProviderSnapshot] = {}
        self.built = False
        """Whether the backends exist yet (`build()` makes them; pass `backends` to skip it)."""
        if backends is not None:
            self._install(dict(backends), {})
        self.registry = registry if registry is not None else RunRegistry()
        self.runs: list[Run] = []
        self.runs_error: str | None = None
        self.remote_run_errors: dict[Provider, str] = {}
        """Why checking runs on a provider's machines last failed, by provider."""
        self.progress = ProgressReader(config, clock)
        self._progress: dict[str, RunProgress] = {}
        self.ledger = SpendLedger(getattr(self.registry, "path", None))
        """Billed intervals of machines, so spend today survives their end and a restart."""
        self.spend_error: str | None = None
        """Why the spend ledger or a provider's billing could not be read or written, else None."""
        self._recorded: dict[tuple[str, float], BilledInterval] = {}
        self._ledger_loaded: tuple[float, float] | None = None
        self._written: dict[tuple[str, float], float] = {}
        self._billed: dict[Provider, tuple[float, dict[str, float]]] = {}
        self.ssh = SshReadiness(max(1.0, float(config.monitor.poll_seconds)), clock)
        """Which running pods / instances accept an SSH login yet."""
        self._tails: dict[str, RemoteLogTail] = {}
        self._tail_states: dict[str, _ProgressState] = {}
        self._remote_progress: dict[str, RunProgress] = {}
        self._stream_alerts: dict[str, tuple[str, str] | None] = {}
        self._rows_dirty = False
        self._runs_stamp: tuple[object, ...] = ()
        self._runs_read_at = -math.inf

    def _install(self, backends: dict[Provider, Backend], errors: dict[Provider, str]) -> None:
        self.backends = backends
        self.snapshots = {
            provider: ProviderSnapshot(provider, error=errors.get(provider))
            for provider in [*backends, *errors]
        }
        self.built = True

    def build(self) -> None:
        """Build the configured backends (imports SDKs: call from a thread, not the UI loop)."""
        backends, errors = build_backends(self.config, self._environ)
        self._install(backends, errors)

    @property
    def providers(self) -> list[Provider]:
        """Every provider shown, including those whose backend failed to build."""
        return list(self.snapshots)

    async def poll(self, provider: Provider) -> ProviderSnapshot:
        """Ask one backend for its machines; never raises.

        Args:
            provider: Which backend.

        Returns:
            The new snapshot (also stored in `snapshots`): on failure, the previous machines
            with the error and a higher failure count.
        """
        previous = self.snapshots.get(provider, ProviderSnapshot(provider))
        backend = self.backends.get(provider)
        now = self.clock()
        if backend is None:
            snapshot = replace(previous, attempted_at=now, failures=previous.failures + 1)
        else:
            try:
                machines = await backend.list_machines()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("polling %s failed: %s", provider.value, _error_text(exc))
                snapshot = replace(
                    previous,
                    error=_error_text(exc),
                    attempted_at=now,
                    failures=previous.failures + 1,
                )
            else:
                snapshot = ProviderSnapshot(provider, tuple(machines), None, now, now, 0)
                await self._note_spend(previous, snapshot)
                await self._read_billing(provider, backend, now)
        self.snapshots[provider] = snapshot
        if snapshot.error is None:
            self.ssh.forget(m.key for m in self.machines())
        return snapshot

    def ssh_due(self, provider: Provider) -> list[Machine]:
        """This provider's running machines whose SSH should be tried now (marked as under way).

        Call `check_ssh` for each, in its own task: a login can take seconds.
        """
        snapshot = self.snapshots.get(provider)
        return self.ssh.due(snapshot.machines) if snapshot is not None else []

    async def check_ssh(self, machine: Machine) -> bool:
        """Try to log in to `machine`; returns whether its row's SSH word changed."""
        return await self.ssh.check(machine)

    # ---- spend ---------------------------------------------------------------------------

    def _remember(self, intervals: Iterable[BilledInterval], written_at: float) -> None:
        for interval in intervals:
            at = (interval.key, interval.start)
            known = self._recorded.get(at)
            if (
                known is None
                or interval.end_exact
                or (not known.end_exact and known.end <= interval.end)
            ):
                self._recorded[at] = interval
            self._written[at] = written_at

    async def _write(self, intervals: list[BilledInterval], now: float) -> None:
        if not intervals:
            return
        try:
            await asyncio.to_thread(self.ledger.record, intervals)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.spend_error = f"spend ledger not written: {_error_text(exc)}"
            _log.warning("%s", self.spend_error)
        else:
            self.spend_error = None
        self._remember(intervals, now)

    async def _note_spend(self, before: ProviderSnapshot, after: ProviderSnapshot) -> None:
        """Write billing intervals: extended while billing, closed when a machine stops billing.

        A machine that stopped billing or vanished between two polls is recorded up to the
        last poll that saw it billing (the real end is between the two polls).
        """
        now = after.fetched_at or self.clock()
        due: list[BilledInterval] = []
        current: dict[str, Machine] = {m.key: m for m in after.machines}
        for machine in after.machines:
            if not machine.state.is_billing:
                continue
            interval = interval_of(machine, now)
            if interval is None:
                continue
            written = self._written.get((interval.key, interval.start))
            if written is None or now - written >= LEDGER_WRITE_SECONDS:
                due.append(interval)
        seen_at = before.fetched_at
        for machine in before.machines:
            if seen_at is None or not machine.state.is_billing:
                continue
            still = current.get(machine.key)
            if (
                still is not None
                and still.state.is_billing
                and still.started_at == machine.started_at
            ):
                continue
            interval = interval_of(machine, seen_at)
            if interval is not None:
                due.append(interval)
        await self._write(due, now)

    async def record_end(self, machine: Machine) -> None:
        """Record that runctl stopped or terminated `machine` now (exact end); never raises."""
        interval = interval_of(machine, self.clock(), end_exact=True)
        if interval is not None:
            await self._write([interval], self.clock())

    async def _read_billing(self, provider: Provider, backend: Backend, now: float) -> None:
        read = getattr(backend, "spend_since", None)
        if read is None:
            return
        midnight = _midnight(now)
        try:
            amounts = await read(midnight)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The ledger still counts; an older day's billing must not.
            _log.info("%s billing unavailable: %s", provider.value, _error_text(exc))
            kept = self._billed.get(provider)
            if kept is not None and kept[0] != midnight:
                del self._billed[provider]
            return
        self._billed[provider] = (midnight, dict(amounts))

    def _load_ledger(self) -> None:
        """Re-read today's intervals (at most every `LEDGER_RELOAD_SECONDS`, or a new day)."""
        midnight = _midnight(self.clock())
        tick = time.monotonic()
        loaded = self._ledger_loaded
        if (
            loaded is not None
            and loaded[0] == midnight
            and tick - loaded[1] < LEDGER_RELOAD_SECONDS
        ):
            return
        try:
            intervals = self.ledger.since(midnight)
        except Exception as exc:
            self.spend_error = f"spend ledger unreadable: {_error_text(exc)}"
            return
        self._ledger_loaded = (midnight, tick)
        fresh = {(i.key, i.start): i for i in intervals}
        # Our own writes since the read began are kept (they are in the file too).
        for at, interval in list(self._recorded.items()):
            known = fresh.get(at)
            if interval.end >= midnight and (
                known is None or (not known.end_exact and known.end < interval.end)
            ):
                fresh[at] = interval
        self._recorded = fresh

    def _reconcile(self) -> None:
        try:
            local_runs = importlib.import_module("runctl_tui.core.local_runs")
        except ImportError:
            return
        reconcile = getattr(local_runs, "reconcile", None)
        if reconcile is not None:
            reconcile(self.registry)

    def _registry_stamp(self) -> tuple[object, ...]:
        """Size and mtime of the registry's files: every commit changes one of them (WAL)."""
        stamp: list[object] = []
        for suffix in ("", "-wal"):
            try:
                stat = os.stat(f"{self.registry.path}{suffix}")
            except OSError:
                stamp.append(None)
            else:
                stamp.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamp)

    def _refresh_runs_sync(self) -> bool:
        # Other processes (`runctl ... terminate`, another dashboard) write the ledger too.
        self._load_ledger()
        stamp = self._registry_stamp()
        tick = time.monotonic()
        if (
            stamp == self._runs_stamp
            and not self._rows_dirty
            and tick - self._runs_read_at < RUNS_REREAD_SECONDS
            and not any(run.status is RunStatus.RUNNING for run in self.runs)
        ):
            # Nothing runs and nobody wrote the registry: nothing to reconcile or re-read (a
            # stat instead of three queries, every poll, for a dashboard left open for days).
            return False
        self._runs_read_at = tick
        self._reconcile()
        runs = self.registry.list()
        shown = {(m.provider, m.id) for s in self.snapshots.values() for m in s.machines}
        newest: dict[tuple[Provider, str], Run] = {}
        for run in runs:
            newest.setdefault((run.backend, run.machine), run)
        progress: dict[str, RunProgress] = {}
        for machine_key, run in newest.items():
            if machine_key not in shown or run.backend is not Provider.LOCAL:
                continue
            try:
                found = self.progress.read(run)
            except Exception as exc:
                _log.warning("progress of %s unreadable: %s", run.id, _error_text(exc))
                continue
            if found is not None:
                progress[run.id] = found
        self.progress.forget(progress)
        going = {r.id for r in runs if r.status is RunStatus.RUNNING}
        for run_id in list(self._stream_alerts):  # a copy: the UI loop may add one meanwhile
            if run_id not in going:
                self._stream_alerts.pop(run_id, None)
        changed = runs != self.runs or progress != self._progress or self._rows_dirty
        self._rows_dirty = False
        self.runs = runs
        self._progress = progress
        self._runs_stamp = self._registry_stamp()  # after our own writes (reconcile)
        return changed

    async def refresh_runs(self) -> bool:
        """Re-read the run registry (reconciling local runs) and the progress of shown runs.

        Returns:
            Whether anything changed since the last call. Errors are kept in `runs_error`.
        """
        try:
            changed = await asyncio.to_thread(self._refresh_runs_sync)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = f"run registry unreadable: {_error_text(exc)}"
            changed = message != self.runs_error
            self.runs_error = message
            return changed
        if self.runs_error is not None:
            self.runs_error = None
            changed = True
        return changed

    async def refresh_remote_runs(self, provider: Provider, *, readonly: bool = False) -> bool:
        """Ask pods / instances how their running runs are doing and record changes.

        Connects over SSH once per running run, so call it less often than `poll`. Errors are
        logged and kept in `remote_run_errors`, never raised.

        Args:
            provider: RunPod or AWS (anything else is a no-op).
            readonly: Never start anything (AWS auto-resume is skipped).

        Returns:
            Whether any run's status changed.
        """
        backend = self.backends.get(provider)
        if backend is None or provider is Provider.LOCAL:
            return False
        try:
            if provider is Provider.RUNPOD:
                module = importlib.import_module("runctl_tui.core.runpod_training")
                changed = False
                for run in self.runs:
                    if run.backend is Provider.RUNPOD and run.status is RunStatus.RUNNING:
                        now_run, _ = await module.refresh_run(backend, run, self.registry)
                        changed = changed or now_run.status is not run.status
            else:
                module = importlib.import_module("runctl_tui.core.aws_training")
                config = self.config
                if readonly and config.aws.auto_resume:
                    config = replace(config, aws=replace(config.aws, auto_resume=False))
                changed = bool(await module.reconcile_runs(config, backend, registry=self.registry))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.remote_run_errors[provider] = _error_text(exc)
            _log.warning("checking %s runs failed: %s", provider.value, _error_text(exc))
            return False
        self.remote_run_errors.pop(provider, None)
        await self._read_remote_progress(provider)
        return changed

    async def _read_remote_progress(self, provider: Provider) -> None:
        """Read the new lines of each running run's log on this provider's machines (one SSH
        command per run) and summarise its metrics, alerts included; never raises."""
        snapshot = self.snapshots.get(provider)
        machines = {m.id: m for m in snapshot.machines} if snapshot is not None else {}
        newest: dict[str, Run] = {}
        for run in self.runs:
            if run.backend is provider:
                newest.setdefault(run.machine, run)
        running: set[str] = set()
        for machine_id, run in newest.items():
            machine = machines.get(machine_id)
            if run.status is not RunStatus.RUNNING or machine is None or not wants_probe(machine):
                continue
            assert machine.ssh is not None
            running.add(run.id)
            tail = self._tails.get(run.id)
            if tail is None:
                tail = self._tails[run.id] = RemoteLogTail(
                    machine.ssh,
                    run.log_path,
                    patterns=tuple(self.config.monitor.metrics_regex),
                    clock=self.clock,
                )
                self._tail_states[run.id] = _ProgressState(tail.stream)
            try:
                await tail.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.info("log of %s on %s unreadable: %s", run.id, machine.key, _error_text(exc))
                continue
            state = self._tail_states[run.id]
            state.tracker = tail.stream  # a truncated log starts a new stream
            found = self.progress.summarise(state, run)
            if found != self._remote_progress.get(run.id):
                if found is None:
                    self._remote_progress.pop(run.id, None)
                else:
                    self._remote_progress[run.id] = found
                self._rows_dirty = True
        known = {r.id: r.backend for r in self.runs}
        ended = [r for r in self._tails if r not in running and known.get(r, provider) is provider]
        for run_id in ended:
            del self._tails[run_id]
            del self._tail_states[run_id]
            self._remote_progress.pop(run_id, None)

    def set_stream_alerts(self, run_id: str, alerts: Sequence[Any]) -> bool:
        """The alerts of a remote run's live metrics stream (the metrics pane following it).

        They are fresher than the periodic reads, so they win for that run's row.

        Args:
            run_id: The run the stream follows.
            alerts: The metrics package's alerts (`kind`, `message`), first one shown.

        Returns:
            Whether the run's mark changed.
        """
        first = alerts[0] if alerts else None
        value = (
            (ALERT_WORDS.get(first.kind, first.kind), str(first.message))
            if first is not None
            else None
        )
        changed = self._stream_alerts.get(run_id, "unset") != value
        self._stream_alerts[run_id] = value
        return changed

    def machines(self) -> list[Machine]:
        """Every machine from every backend's last good answer, in provider order."""
        return [m for s in self.snapshots.values() for m in s.machines]

    def rows(self) -> list[FleetRow]:
        """Machines joined with their newest run and its progress."""
        rows = join_runs(self.machines(), self.runs)
        return [
            replace(row, progress=self._progress_of(row.run), ssh=self.ssh.get(row.machine))
            for row in rows
        ]

    def _progress_of(self, run: Run | None) -> RunProgress | None:
        if run is None:
            return None
        if run.backend is Provider.LOCAL:
            return self._progress.get(run.id)
        progress = self._remote_progress.get(run.id)
        if run.id not in self._stream_alerts:
            return progress
        streamed = self._stream_alerts[run.id]
        alert, message = streamed if streamed is not None else (None, None)
        return replace(progress or RunProgress(), alert=alert, alert_message=message)

    def totals(self) -> FleetTotals:
        """Burn rate and spend today now (machines gone since midnight included)."""
        now = self.clock()
        midnight = _midnight(now)
        billed = {p: amounts for p, (day, amounts) in self._billed.items() if day == midnight}
        return compute_totals(
            self.machines(), now, recorded=list(self._recorded.values()), billed=billed
        )

    def runs_on(self, machine: Machine) -> list[Run]:
        """Every recorded run on this machine, newest first."""
        return [r for r in self.runs if r.backend is machine.provider and r.machine == machine.id]

    def find_row(self, key: str) -> FleetRow | None:
        """The row of the machine with this key, if shown."""
        return next((row for row in self.rows() if row.key == key), None)

    async def aclose(self) -> None:
        """Close every backend, ignoring their errors (we are leaving)."""
        for backend in self.backends.values():
            try:
                await backend.aclose()
            except Exception as exc:
                _log.info("closing %s: %s", backend.provider.value, _error_text(exc))


def is_running(run: Run | None) -> bool:
    """Whether this run is still going."""
    return run is not None and run.status is RunStatus.RUNNING
