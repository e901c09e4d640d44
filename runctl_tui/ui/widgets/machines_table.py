"""The machines pane: every machine of every provider with its cost and the run on it.

Rows are diffed against what is on screen, so a poll that changes nothing redraws nothing and
a poll that changes one figure redraws one row. (Textual's `update_cell` forgets every rendered
cell of the table, so each poll that moved a GPU% or a step re-rendered all of them: ~10 ms.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from runctl_tui.core.fleet import FleetRow
from runctl_tui.core.models import MachineState, Provider, RunStatus

STATE_LOOK: dict[MachineState, tuple[str, str]] = {
    MachineState.PROVISIONING: ("◐", "yellow"),
    MachineState.STARTING: ("◐", "yellow"),
    MachineState.RUNNING: ("●", "green"),
    MachineState.STOPPING: ("◑", "yellow"),
    MachineState.STOPPED: ("○", "blue"),
    MachineState.TERMINATING: ("✕", "red"),
    MachineState.TERMINATED: ("✕", "bright_black"),
    MachineState.INTERRUPTED: ("⚠", "bold red"),
    MachineState.UNKNOWN: ("?", "magenta"),
}
"""Symbol and colour of each state; the word is always shown too (never colour alone)."""

RUN_LOOK: dict[RunStatus, tuple[str, str]] = {
    RunStatus.RUNNING: ("▶", "green"),
    RunStatus.SUCCEEDED: ("✓", "cyan"),
    RunStatus.FAILED: ("✗", "bold red"),
    RunStatus.STOPPED: ("■", "yellow"),
    RunStatus.LOST: ("?", "magenta"),
    RunStatus.INTERRUPTED: ("⚠", "bold red"),
}

FLAG_STYLE = "bold red"


@dataclass(frozen=True)
class Column:
    """A column of the machines table."""

    key: str
    label: str
    sort_value: Callable[[FleetRow, float], Any]


def short_gpu(row: FleetRow) -> str:
    """`RTX 4090 x2`, `A100 80GB`, or an empty string when there is no GPU."""
    name = row.machine.gpu_type
    for prefix in ("NVIDIA ", "GeForce ", "Tesla "):
        name = name.replace(prefix, "")
    if not name:
        return ""
    count = row.machine.gpu_count
    return f"{name} x{count}" if count > 1 else name


def fmt_money(value: float | None) -> str:
    """`$1.23`, `$0.042` below ten cents, `—` when unknown."""
    if value is None:
        return "—"
    if abs(value) < 0.1 and value != 0:
        return f"${value:.3f}"
    return f"${value:,.2f}"


def fmt_duration(seconds: float | None) -> str:
    """Compact duration: `45s`, `12m`, `3h05m`, `2d04h`, `—`."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m"
    if total < 86400:
        return f"{total // 3600}h{(total % 3600) // 60:02d}m"
    return f"{total // 86400}d{(total % 86400) // 3600:02d}h"


def fmt_loss(value: float | None) -> str:
    """Loss with four significant digits; `nan`/`inf` spelled out."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def _price(row: FleetRow) -> Text:
    machine = row.machine
    if machine.price_per_hour is None:
        return Text("—" if machine.provider is Provider.LOCAL else "?", style="dim")
    text = fmt_money(machine.price_per_hour)
    if machine.price_is_estimate:
        return Text("~" + text, style="italic")
    return Text(text)


def _state(row: FleetRow) -> Text:
    if row.ssh is not None:
        # Running, but only `ready` once an SSH login with the configured key worked.
        ready = row.ssh.word == "ready"
        return Text(f"{'●' if ready else '◐'} {row.ssh.word}", style="green" if ready else "yellow")
    symbol, style = STATE_LOOK.get(row.machine.state, ("?", "magenta"))
    return Text(f"{symbol} {row.machine.state.value}", style=style)


def _gpu_util(row: FleetRow) -> str:
    values = [g.utilisation_percent for g in row.machine.gpus if g.utilisation_percent is not None]
    if not values:
        return "—"
    return f"{sum(values) / len(values):.0f}%"


def run_cell(row: FleetRow, flag: str | None) -> Text:
    """The run column: status symbol and word, plus a flag such as `stalled`."""
    if row.run is None:
        return Text("—", style="dim")
    symbol, style = RUN_LOOK.get(row.run.status, ("?", "magenta"))
    text = Text(f"{symbol} {row.run.status.value}", style=style)
    if flag:
        text.append(f" {flag}", style=FLAG_STYLE)
    return text


def _step(row: FleetRow) -> str:
    progress = row.progress
    if progress is None or progress.step is None:
        return "—"
    if progress.total:
        return f"{progress.step}/{progress.total}"
    return str(progress.step)


def _name(row: FleetRow, with_id: bool) -> Text:
    machine = row.machine
    name = machine.name or machine.id
    if len(name) > 20:
        name = name[:19] + "…"
    text = Text(name)
    if with_id and machine.name and machine.id != machine.name:
        text.append(f" {machine.id[:10]}", style="dim")
    return text


def _num(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else -math.inf


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("provider", "Provider", lambda r, n: r.machine.provider.value),
        Column("name", "Name", lambda r, n: (r.machine.name or r.machine.id).lower()),
        Column("gpu", "GPU", lambda r, n: short_gpu(r)),
        Column("state", "State", lambda r, n: r.machine.state.value),
        Column("price", "$/h", lambda r, n: _num(r.machine.price_per_hour)),
        Column("cost", "Cost", lambda r, n: _num(r.machine.cost_so_far(n))),
        Column("uptime", "Up", lambda r, n: _num(r.machine.uptime_seconds(n))),
        Column("util", "GPU%", lambda r, n: _gpu_util(r)),
        Column("run", "Run", lambda r, n: r.run.status.value if r.run else ""),
        Column("step", "Step", lambda r, n: _num(r.progress.step if r.progress else None)),
        Column(
            "rate", "it/s", lambda r, n: _num(r.progress.steps_per_second if r.progress else None)
        ),
        Column("eta", "ETA", lambda r, n: _num(r.progress.eta_seconds if r.progress else None)),
        Column("loss", "Loss", lambda r, n: _num(r.progress.loss if r.progress else None)),
    )
}

WIDE_ORDER = (
    "provider", "name", "gpu", "state", "price", "cost", "uptime", "util",
    "run", "step", "rate", "eta", "loss",
)  # fmt: skip
"""The full order, used when the terminal is wide."""
COMPACT_ORDER = (
    "provider", "name", "state", "price", "cost", "run", "step", "loss",
    "eta", "gpu", "uptime", "util", "rate",
)  # fmt: skip
"""On narrow terminals the columns that matter most come first (the rest scroll)."""


def render_cells(
    row: FleetRow, now: float, flag: str | None = None, *, with_id: bool = True
) -> dict[str, Any]:
    """Every cell of a row, by column key.

    Args:
        row: The machine and its run.
        now: Epoch seconds (for uptime and accrued cost).
        flag: A word to mark the run with (`stalled`, `diverged`), if any.
        with_id: Show the machine id after its name (wide terminals).

    Returns:
        Cell renderables by column key.
    """
    progress = row.progress
    return {
        "provider": row.machine.provider.value,
        "name": _name(row, with_id),
        "gpu": short_gpu(row) or "—",
        "state": _state(row),
        "price": _price(row),
        "cost": fmt_money(row.machine.cost_so_far(now)),
        "uptime": fmt_duration(row.machine.uptime_seconds(now)),
        "util": _gpu_util(row),
        "run": run_cell(row, flag),
        "step": _step(row),
        "rate": (
            f"{progress.steps_per_second:.2f}"
            if progress and progress.steps_per_second is not None
            else "—"
        ),
        "eta": fmt_duration(progress.eta_seconds if progress else None),
        "loss": fmt_loss(progress.loss if progress else None),
    }


def _plain(value: Any) -> str:
    return value.plain if isinstance(value, Text) else str(value)


def _forget(cache: LRUCache[Any, Any], stale: Callable[[Any], bool]) -> None:
    """Drop the entries of one of DataTable's caches whose key is `stale`."""
    for key in [k for k in cache.keys() if stale(k)]:  # noqa: SIM118 (not iterable)
        cache.discard(key)


class MachinesTable(DataTable[Any]):
    """Machines of every provider, sortable and filterable, one row per machine."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("o", "cycle_sort", "Sort", show=False),
        Binding("O", "reverse_sort", "Reverse sort", show=False),
    ]

    filter_text: reactive[str] = reactive("")
    """Only rows whose text contains this (case-insensitive) are shown."""
    sort_key: reactive[str] = reactive("provider")
    """Column key the rows are sorted by."""
    sort_reverse: reactive[bool] = reactive(False)
    """Whether the sort is descending."""

    class MachineSelected(Message):
        """The highlighted machine changed (or its row changed under the cursor)."""

        def __init__(self, key: str | None) -> None:
            self.key = key
            """Key of the machine (`runpod:abc`), None when the table is empty."""
            super().__init__()

    def __init__(
        self,
        *,
        compact: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, name=name, id=id, classes=classes)
        self._compact = compact
        self._rows: list[FleetRow] = []
        self._flags: dict[str, str] = {}
        self._now = 0.0
        self._shown_keys: list[str] = []
        self._shown_cells: dict[str, dict[str, Any]] = {}
        self._selected: str | None = None
        self._wanted: str | None = None

    def on_mount(self) -> None:
        self._build_columns()

    @property
    def selected_key(self) -> str | None:
        """Key of the machine under the cursor."""
        return self._selected

    @property
    def shown_keys(self) -> list[str]:
        """Keys of the rows shown, top to bottom."""
        return list(self._shown_keys)

    def _order(self) -> Sequence[str]:
        return COMPACT_ORDER if self._compact else WIDE_ORDER

    def _build_columns(self) -> None:
        self.clear(columns=True)
        for key in self._order():
            column = COLUMNS[key]
            label = column.label
            if key == self.sort_key:
                label += " ▼" if self.sort_reverse else " ▲"
            self.add_column(label, key=key)
        self._shown_keys = []
        self._shown_cells = {}
        self._apply()

    def set_compact(self, compact: bool) -> None:
        """Switch between the compact and the wide column order."""
        if compact != self._compact:
            self._compact = compact
            self._build_columns()

    def select_key(self, key: str) -> None:
        """Move the cursor to the machine with this key; if not shown yet, once it appears."""
        if key in self._shown_keys:
            self._wanted = None
            self.move_cursor(row=self._shown_keys.index(key), animate=False)
        else:
            self._wanted = key

    def forget_wanted(self) -> None:
        """Stop waiting for a remembered machine to appear (every backend has answered)."""
        self._wanted = None

    def update_rows(
        self, rows: Sequence[FleetRow], now: float, flags: dict[str, str] | None = None
    ) -> None:
        """Show these rows; only cells that changed are redrawn.

        Args:
            rows: Every machine with its run.
            now: Epoch seconds for uptime and cost.
            flags: Words marking runs by machine key (`stalled`, `diverged`).
        """
        self._rows = list(rows)
        self._now = now
        self._flags = dict(flags or {})
        self._apply()

    def watch_filter_text(self) -> None:
        self._apply()

    def watch_sort_key(self) -> None:
        if self.is_mounted:
            self._build_columns()

    def watch_sort_reverse(self) -> None:
        if self.is_mounted:
            self._build_columns()

    def action_cycle_sort(self) -> None:
        """Sort by the next column."""
        order = list(self._order())
        index = order.index(self.sort_key) if self.sort_key in order else -1
        self.sort_key = order[(index + 1) % len(order)]

    def action_reverse_sort(self) -> None:
        """Flip the sort direction."""
        self.sort_reverse = not self.sort_reverse

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = str(event.column_key.value)
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key = key

    def _desired(self) -> list[tuple[str, dict[str, Any]]]:
        needle = self.filter_text.strip().lower()
        column = COLUMNS.get(self.sort_key, COLUMNS["provider"])
        rows = sorted(
            self._rows,
            key=lambda r: (column.sort_value(r, self._now), r.key),
            reverse=self.sort_reverse,
        )
        desired: list[tuple[str, dict[str, Any]]] = []
        for row in rows:
            cells = render_cells(
                row, self._now, self._flags.get(row.key), with_id=not self._compact
            )
            if needle and needle not in " ".join(_plain(c) for c in cells.values()).lower():
                continue
            desired.append((row.key, cells))
        return desired

    def _apply(self) -> None:
        if not self.is_mounted or not self.columns:
            return
        desired = self._desired()
        keys = [key for key, _ in desired]
        if keys != self._shown_keys:
            self._rebuild(desired)
        else:
            for key, cells in desired:
                old = self._shown_cells.get(key, {})
                changed = {c: v for c, v in cells.items() if old.get(c) != v}
                if changed:
                    self._set_cells(key, changed)
                self._shown_cells[key] = cells
        self._sync_selection()

    def _set_cells(self, key: str, changed: dict[str, Any]) -> None:
        """Put new values in one row's cells, redrawing that row only.

        When a column widens, Textual's `update_cell` lays the columns out again (and redraws
        everything, as it must).
        """
        row_key = RowKey(key)
        columns = {ColumnKey(c): v for c, v in changed.items()}
        widens = {column: self._widens(column, value) for column, value in columns.items()}
        if any(widens.values()):
            for column, value in columns.items():
                self.update_cell(row_key, column, value, update_width=widens[column])
            return
        row = self._data[row_key]
        row.update(columns)
        row_index = self._row_locations.get(row_key)
        # Forget what was rendered from this row's old cells, and nothing else (the cache keys
        # of Textual 8's DataTable: cells by (row, column, ...), rows by (row, ...), a row's
        # renderables by (update count, row index), screen lines by y).
        _forget(self._cell_render_cache, lambda k: k[0] == row_key and k[1] in columns)
        _forget(self._row_render_cache, lambda k: k[0] == row_key)
        _forget(self._row_renderable_cache, lambda k: k[1] == row_index)
        self._line_cache.clear()
        if row_index is not None:
            self.refresh_row(row_index)

    def _widens(self, column_key: ColumnKey, value: Any) -> bool:
        """Whether a new value is wider than its column.

        Columns only widen between rebuilds (a new set of rows, a sort, a filter): an ETA going
        from `1m` to `59s` neither shifts every column to its right nor redraws the table.
        """
        column = self.columns.get(column_key)
        return column is None or cell_len(_plain(value)) > column.content_width

    def _rebuild(self, desired: list[tuple[str, dict[str, Any]]]) -> None:
        selected = self._selected
        if self._wanted in {key for key, _ in desired}:
            selected, self._wanted = self._wanted, None
        self.clear()
        order = self._order()
        for key, cells in desired:
            self.add_row(*(cells[c] for c in order), key=key)
        self._shown_keys = [key for key, _ in desired]
        self._shown_cells = dict(desired)
        if selected in self._shown_keys:
            self.move_cursor(row=self._shown_keys.index(selected), animate=False)
        elif self._shown_keys:
            self.move_cursor(row=0, animate=False)

    def _sync_selection(self) -> None:
        if not self._shown_keys:
            return
        row = min(max(self.cursor_row, 0), len(self._shown_keys) - 1)
        key = self._shown_keys[row]
        if key != self._selected:
            self._selected = key
            self.post_message(self.MachineSelected(key))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = str(event.row_key.value) if event.row_key.value is not None else None
        if key is not None and key != self._selected:
            self._selected = key
            self.post_message(self.MachineSelected(key))
