"""The checkpoint browser: every checkpoint of a directory, live, with the best marked.

Listing, inspecting and deleting run in thread workers; the directory is watched with
watchfiles in one exclusive worker, so switching directories stops the old watch. A checkpoint
whose size moves between two looks is shown as being written; a file the safe reader cannot
read is shown as unreadable, never allowed to break the pane.

A hidden pane (another tab in a small terminal, or another pane zoomed) neither watches nor
lists: a run that saves a checkpoint every few seconds would otherwise cost a listing, a table
rebuild and a screen layout each time for nothing on screen. It lists again when shown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import humanize
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from runctl_tui.core.checkpoints import (
    CheckpointEntry,
    CheckpointInfo,
    CleanupPlan,
    InspectCache,
    WriteTracker,
    execute_cleanup,
    find_best,
    list_checkpoints,
    open_for_writing,
    plan_cleanup,
)
from runctl_tui.core.config import CheckpointsConfig
from runctl_tui.core.secrets import scrub

RemoteLister = Callable[[], Awaitable[list[CheckpointEntry]]]
"""Lists a remote directory (SSH or S3) in one call; polled, since remote files send no events."""

VISIBLE_ROWS = 60
"""Rows whose headers are read right after a listing (metric, unreadable mark)."""
APPEAR_POLL_SECONDS = 1.0
"""How often a folder that does not exist (yet) is looked for."""
WRITING_RECHECK_MS = 1000
"""While a checkpoint is being written, look again this often even without file events."""

COLUMNS = (
    ("best", " "),
    ("name", "Checkpoint"),
    ("format", "Format"),
    ("size", "Size"),
    ("age", "Age"),
    ("step", "Step"),
    ("epoch", "Epoch"),
    ("metric", "Metric"),
    ("status", "Status"),
)


@dataclass
class Listing:
    """One scan's result, handed from the worker thread to the table."""

    entries: list[CheckpointEntry]
    infos: dict[str, CheckpointInfo]
    scanned_at: float


def _number(from_name: float | None, from_file: float | None) -> Text:
    value = from_name if from_name is not None else from_file
    if value is None:
        return Text("—", justify="right", style="dim")
    if isinstance(value, float) and not value.is_integer():
        return Text(f"{value:.2f}", justify="right")
    return Text(str(int(value)), justify="right")


def display_path(path: Path) -> str:
    """`path` with the home directory written as `~`."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


class CheckpointBrowser(Vertical, can_focus=False):
    """A table of the checkpoints in one directory, with details of the selected one.

    Args:
        settings: The `[checkpoints]` section (best metric and mode, keep_last, protected).
        readonly: Disable cleanup.
        clock: Returns "now" in epoch seconds (tests and screenshots pin it).
    """

    DEFAULT_CSS = """
    CheckpointBrowser { height: 1fr; }
    CheckpointBrowser > #ckpt-title { height: 1; padding: 0 1; background: $panel; }
    CheckpointBrowser > DataTable { height: 1fr; }
    CheckpointBrowser > #ckpt-details { height: auto; max-height: 12; padding: 0 1; border-top: solid $panel; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("C", "cleanup", "Clean up"),
        Binding("R", "resume", "Resume"),
        Binding("ctrl+r", "refresh", "Rescan", show=False),
    ]

    class Selected(Message):
        """The highlighted checkpoint changed."""

        def __init__(self, entry: CheckpointEntry | None) -> None:
            super().__init__()
            self.entry = entry

    class ResumeRequested(Message):
        """The user asked to resume a run from `entry` (the dashboard knows the script)."""

        def __init__(self, entry: CheckpointEntry) -> None:
            super().__init__()
            self.entry = entry

    class CleanedUp(Message):
        """A cleanup finished: `deleted` checkpoints, `freed_bytes` bytes."""

        def __init__(self, deleted: int, freed_bytes: int) -> None:
            super().__init__()
            self.deleted = deleted
            self.freed_bytes = freed_bytes

    def __init__(
        self,
        settings: CheckpointsConfig | None = None,
        *,
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.settings = settings or CheckpointsConfig()
        self.readonly = readonly
        self.clock = clock
        self.directory: Path | None = None
        self.remote_label: str | None = None
        self.entries: list[CheckpointEntry] = []
        self.infos: dict[str, CheckpointInfo] = {}
        self.scans = 0
        """How many listings have been shown (tests wait on it)."""
        self.error: str | None = None
        self.cache = InspectCache()
        self._tracker = WriteTracker()
        self._remote: RemoteLister | None = None
        self._scanned_at: float | None = None
        self._title_shown: Text | None = None
        self._details_stamp: tuple[str, int, float] | None = None
        self._cells_shown: dict[str, dict[str, Any]] = {}
        """The table's cells by checkpoint path, as last set."""
        self._visible = asyncio.Event()
        """Set while the pane is on screen (Textual's Show and Hide events)."""
        self._watch_stop: asyncio.Event | None = None
        """Stops the current directory watch (set when the pane is hidden)."""

    def compose(self) -> ComposeResult:
        yield Static("no checkpoint directory", id="ckpt-title")
        table: DataTable[Any] = DataTable(id="ckpt-table", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="ckpt-details")

    @property
    def table(self) -> DataTable[Any]:
        """The checkpoints table."""
        return self.query_one("#ckpt-table", DataTable)

    # ---- sources ---------------------------------------------------------------------

    def set_directory(self, path: Path | None) -> None:
        """Show and watch a local directory (None: show nothing and stop watching)."""
        self.directory = Path(path).expanduser().resolve() if path is not None else None
        self._remote = None
        self.remote_label = None
        self._reset()
        if self.directory is None:
            self.workers.cancel_group(self, "checkpoints-watch")
            self._set_title()
            return
        self._watch(self.directory)

    def set_remote(
        self, lister: RemoteLister | None, label: str = "", poll_seconds: float = 5.0
    ) -> None:
        """Show a remote directory, listed by `lister` every `poll_seconds` (None: stop)."""
        self.directory = None
        self._remote = lister
        self.remote_label = label or "remote"
        self._reset()
        if lister is None:
            self.workers.cancel_group(self, "checkpoints-watch")
            self._set_title()
            return
        self._poll_remote(lister, poll_seconds)

    def _reset(self) -> None:
        self._tracker = WriteTracker()
        self.entries = []
        self.infos = {}
        self.error = None
        self._scanned_at = None
        self._details_stamp = None
        self._cells_shown = {}
        if self.is_mounted:
            self.table.clear()
            self.query_one("#ckpt-details", Static).update("")
            self._set_title("listing…")

    def on_show(self) -> None:
        self._visible.set()

    def on_hide(self) -> None:
        self._visible.clear()
        if self._watch_stop is not None:
            self._watch_stop.set()

    def action_refresh(self) -> None:
        """List the directory again now."""
        if self.directory is not None:
            self._watch(self.directory)
        elif self._remote is not None:
            self._poll_remote(self._remote, 5.0)

    # ---- workers ---------------------------------------------------------------------

    def _scan(self, directory: Path) -> Listing:
        """Blocking: list, mark writing and best, read headers of the first rows (a thread)."""
        entries = self._tracker.observe(list_checkpoints(directory))
        find_best(
            entries,
            metric=self.settings.best_metric,
            mode=self.settings.best_mode,
            inspect=self.cache,
        )
        infos: dict[str, CheckpointInfo] = {}
        for entry in entries[:VISIBLE_ROWS]:
            if entry.error is None and not entry.writing:
                infos[entry.path] = self.cache(Path(entry.path))
        return Listing(entries, infos, self.clock())

    @work(exclusive=True, group="checkpoints-watch", exit_on_error=False)
    async def _watch(self, directory: Path) -> None:
        from watchfiles import awatch

        while True:
            await self._visible.wait()
            if not directory.is_dir():
                # A run's checkpoint folder often appears only with its first checkpoint.
                self._show_waiting(directory)
                await asyncio.sleep(APPEAR_POLL_SECONDS)
                continue
            await self._rescan(directory)
            stop = self._watch_stop = asyncio.Event()
            if not self._visible.is_set():
                continue  # hidden while listing: wait until shown, then list again
            try:
                async for changes in awatch(
                    directory,
                    debounce=400,
                    step=50,
                    rust_timeout=WRITING_RECHECK_MS,
                    yield_on_timeout=True,
                    stop_event=stop,
                    ignore_permission_denied=True,
                ):
                    if not directory.is_dir() or not self._visible.is_set():
                        break  # gone, or hidden (changes seen as the watch stopped wait)
                    if changes or any(e.writing for e in self.entries):
                        await self._rescan(directory)
            except (OSError, RuntimeError) as exc:
                # The folder was removed or the watcher failed: say so, then start over.
                self.error = scrub(str(exc) or type(exc).__name__)
                self._set_title()
            finally:
                stop.set()
            if self._visible.is_set():
                await asyncio.sleep(APPEAR_POLL_SECONDS)

    def _show_waiting(self, directory: Path) -> None:
        if self.entries:
            self.entries = []
            self.infos = {}
            self.table.clear()
        self.error = None
        self._set_title(f"waiting for {directory.name}/ to appear")

    async def _rescan(self, directory: Path) -> None:
        try:
            listing = await asyncio.to_thread(self._scan, directory)
        except Exception as exc:
            self.error = scrub(str(exc) or type(exc).__name__)
            self._set_title()
            return
        self.error = None
        self._show(listing)

    @work(exclusive=True, group="checkpoints-watch", exit_on_error=False)
    async def _poll_remote(self, lister: RemoteLister, poll_seconds: float) -> None:
        while True:
            await self._visible.wait()
            try:
                entries = self._tracker.observe(await lister())
                await asyncio.to_thread(
                    find_best,
                    entries,
                    metric=self.settings.best_metric,
                    mode=self.settings.best_mode,
                    read_contents=False,
                )
                self.error = None
                self._show(Listing(entries, {}, self.clock()))
            except Exception as exc:
                self.error = scrub(str(exc) or type(exc).__name__)
                self._set_title()
            await asyncio.sleep(poll_seconds)

    @work(exclusive=True, group="checkpoint-inspect", exit_on_error=False, thread=True)
    def _inspect(self, entry: CheckpointEntry) -> None:
        info = self.cache(Path(entry.path))
        self.app.call_from_thread(self._show_details, entry, info)

    # ---- rendering -------------------------------------------------------------------

    def _set_title(self, status: str | None = None) -> None:
        if not self.is_mounted:
            return
        if self.directory is not None:
            where = display_path(self.directory)
        elif self._remote is not None:
            where = self.remote_label or "remote"
        else:
            self._update_title(Text("no checkpoint directory"))
            return
        text = Text(f"Checkpoints  {where}", style="bold")
        if self.error:
            text.append(f"  ⚠ {self.error}", style="bold red")
        elif status:
            text.append(f"  {status}", style="dim")
        elif self._scanned_at is not None:
            count = len(self.entries)
            total = humanize.naturalsize(sum(e.size_bytes for e in self.entries), binary=True)
            when = dt.datetime.fromtimestamp(self._scanned_at).strftime("%H:%M:%S")
            text.append(f"  {count} · {total} · listed {when}", style="dim")
        self._update_title(text)

    def _update_title(self, text: Text) -> None:
        # The title is one fixed line: repaint it only when it changes, never lay out the screen
        # (the waiting message is re-set every second while a run's folder does not exist yet).
        if self._title_shown is not None and text == self._title_shown:
            return
        self._title_shown = text
        self.query_one("#ckpt-title", Static).update(text, layout=False)

    def _metric(self, entry: CheckpointEntry) -> str:
        info = self.infos.get(entry.path) or self.cache.peek(entry.path)
        sources = [entry.metrics, info.metrics if info else {}]
        for name in (self.settings.best_metric, "val_loss", "eval_loss", "loss"):
            for metrics in sources:
                if name in metrics:
                    return f"{name}={metrics[name]:.4g}"
        return ""

    def _cells(self, entry: CheckpointEntry, now: float) -> dict[str, Any]:
        info = self.infos.get(entry.path)
        name = Text(entry.name)
        if entry.aliases:
            name.append(
                "  ← " + ", ".join(a.rsplit("/", 1)[-1] for a in entry.aliases), style="cyan"
            )
        status = Text("")
        if entry.writing:
            status = Text("writing…", style="bold yellow")
        elif entry.error or (info is not None and info.error):
            status = Text("unreadable", style="bold red")
        fmt = info.format if info is not None and info.format else entry.format
        age = humanize.naturaltime(dt.timedelta(seconds=max(0.0, now - entry.modified)))
        return {
            "best": Text("★", style="bold green") if entry.best else Text(""),
            "name": name,
            "format": fmt,
            "size": Text(humanize.naturalsize(entry.size_bytes, binary=True), justify="right"),
            "age": age,
            "step": _number(entry.step, info.step if info else None),
            "epoch": _number(entry.epoch, info.epoch if info else None),
            "metric": self._metric(entry),
            "status": status,
        }

    def _show(self, listing: Listing) -> None:
        self.entries = listing.entries
        self.infos = listing.infos
        self._scanned_at = listing.scanned_at
        table = self.table
        selected = self._selected_key()
        now = self.clock()
        keys = [e.path for e in self.entries]
        current = [str(row.value) for row in table.rows]
        if keys == current:
            # Only cells that changed: each update_cell makes the table render every cell again.
            for row in self.entries:
                cells = self._cells(row, now)
                shown = self._cells_shown.get(row.path, {})
                for column, value in cells.items():
                    if shown.get(column) != value:
                        table.update_cell(row.path, column, value)
                self._cells_shown[row.path] = cells
        else:
            table.clear()
            self._cells_shown = {}
            for row in self.entries:
                cells = self._cells_shown[row.path] = self._cells(row, now)
                table.add_row(*cells.values(), key=row.path)
            if selected in keys:
                table.move_cursor(row=keys.index(selected))
        self.scans += 1
        self._set_title()
        entry = self.selected_entry
        stamp = (entry.path, entry.size_bytes, entry.modified) if entry else None
        if stamp != self._details_stamp:
            self._select(entry)

    def _selected_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return str(key.value) if key.value is not None else None

    @property
    def selected_entry(self) -> CheckpointEntry | None:
        """The checkpoint under the cursor, if any."""
        key = self._selected_key()
        return next((e for e in self.entries if e.path == key), None)

    @on(DataTable.RowHighlighted, "#ckpt-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        entry = self.selected_entry
        # A listing rebuilt around the same checkpoint highlights it again: its details stand.
        stamp = (entry.path, entry.size_bytes, entry.modified) if entry else None
        if stamp != self._details_stamp:
            self._select(entry)

    def _select(self, entry: CheckpointEntry | None) -> None:
        self._details_stamp = (entry.path, entry.size_bytes, entry.modified) if entry else None
        self.post_message(self.Selected(entry))
        details = self.query_one("#ckpt-details", Static)
        if entry is None:
            details.update("")
            return
        if entry.location != "local":
            details.update(Text(f"{entry.name} · on {entry.location} · {entry.path}", style="dim"))
            return
        details.update(Text(f"{entry.name}: reading header…", style="dim"))
        self._inspect(entry)

    def _show_details(self, entry: CheckpointEntry, info: CheckpointInfo) -> None:
        if self.selected_entry is None or self.selected_entry.path != entry.path:
            return
        self.infos[entry.path] = info
        text = Text()
        text.append(entry.name, style="bold")
        text.append(f"  {info.format} · {humanize.naturalsize(info.size_bytes, binary=True)}")
        text.append(
            f" · modified {dt.datetime.fromtimestamp(entry.modified).strftime('%Y-%m-%d %H:%M:%S')}\n"
        )
        if entry.best:
            text.append(f"★ best: {entry.best_reason}\n", style="green")
        if info.error:
            text.append(f"unreadable: {info.error}\n", style="bold red")
        if info.parameter_count is not None:
            dtypes = ", ".join(f"{k}×{v}" for k, v in info.dtypes.items())
            text.append(
                f"{info.tensor_count} tensors · {info.parameter_count:,} parameters · {dtypes}\n"
            )
        where = []
        if info.epoch is not None:
            where.append(f"epoch {info.epoch}")
        if info.step is not None:
            where.append(f"step {info.step}")
        if where:
            text.append(" · ".join(where) + "\n")
        if info.metrics:
            text.append("  ".join(f"{k}={v:.4g}" for k, v in list(info.metrics.items())[:8]) + "\n")
        if info.keys:
            text.append(
                "keys: " + ", ".join(info.keys[:12]) + (" …" if len(info.keys) > 12 else ""),
                style="dim",
            )
        self.query_one("#ckpt-details", Static).update(text)

    # ---- actions ---------------------------------------------------------------------

    def action_resume(self) -> None:
        """Ask the dashboard to resume from the selected checkpoint."""
        entry = self.selected_entry
        if entry is None:
            return
        if entry.error or (self.infos.get(entry.path) and self.infos[entry.path].error):
            self.notify(f"{entry.name} is unreadable; pick another checkpoint", severity="warning")
            return
        self.post_message(self.ResumeRequested(entry))

    def action_cleanup(self) -> None:
        """Show what cleanup would delete and, once confirmed, delete it."""
        if self.readonly:
            self.notify("read-only mode: cleanup is disabled", severity="warning")
            return
        if self.directory is None:
            self.notify("cleanup works on a local checkpoint directory", severity="warning")
            return
        self._cleanup(self.directory)

    def plan(self) -> CleanupPlan:
        """Blocking: the cleanup plan for the current listing (a thread)."""
        busy = open_for_writing(p for e in self.entries for p in (e.parts or [e.path]))
        return plan_cleanup(
            self.entries,
            keep_last=self.settings.keep_last,
            protected=self.settings.protected,
            writing=busy,
            is_readable=lambda e: self.cache(Path(e.path)).error is None,
        )

    @work(exclusive=True, group="checkpoint-cleanup", exit_on_error=False)
    async def _cleanup(self, directory: Path) -> None:
        from runctl_tui.ui.screens.cleanup_confirm import CleanupConfirmScreen

        plan = await asyncio.to_thread(self.plan)
        if not plan.delete:
            self.notify(f"nothing to clean up: all {len(plan.keep)} checkpoints are kept")
            return
        confirmed = await self.app.push_screen_wait(
            CleanupConfirmScreen(plan, self.settings.keep_last)
        )
        if not confirmed:
            return
        result = await asyncio.to_thread(execute_cleanup, plan)
        freed = humanize.naturalsize(result.freed_bytes, binary=True)
        message = f"deleted {len(result.deleted)} checkpoint(s), freed {freed}"
        if result.skipped:
            message += f"; skipped {len(result.skipped)}: " + "; ".join(
                f"{e.name} ({r})" for e, r in result.skipped[:3]
            )
        self.notify(message, severity="warning" if result.skipped else "information")
        # The directory watch sees the deletions and lists again by itself.
        self.post_message(self.CleanedUp(len(result.deleted), result.freed_bytes))
