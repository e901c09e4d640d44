"""Redraw budgets of the panes, counted (not timed) in headless Pilot runs.

A dashboard left open for days must cost nearly nothing: a growing log repaints the log pane
only (never a layout of the whole screen), an idle pane runs no timer and repaints nothing, and
the metrics pane repaints only when a poll found new points.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Region
from textual.pilot import Pilot
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.widgets.data_table import ColumnKey

from runctl_tui.core.config import Config
from runctl_tui.core.fleet import FleetRow, FleetTotals, ProviderSnapshot
from runctl_tui.core.logsource import LogChunk
from runctl_tui.core.models import GpuInfo, Machine, MachineState, Provider
from runctl_tui.ui.widgets import metrics_panel
from runctl_tui.ui.widgets.checkpoint_browser import CheckpointBrowser
from runctl_tui.ui.widgets.header_bar import HeaderBar
from runctl_tui.ui.widgets.log_view import LogLines, LogView
from runctl_tui.ui.widgets.machines_table import MachinesTable
from runctl_tui.ui.widgets.metrics_panel import MetricsPanel

CLOCK = 1_790_000_000.0


class QueueSource:
    """A LogSource fed by the test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[LogChunk] = asyncio.Queue()

    @property
    def description(self) -> str:
        return "runs/demo/train.log"

    def put(self, lines: list[str], size: int | None = None) -> None:
        self.queue.put_nowait(LogChunk(lines=tuple(lines), size=size))

    async def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
        while True:
            yield await self.queue.get()


class Counts:
    """Counts of screen layouts, widget refreshes (by class) and timer ticks."""

    def __init__(self) -> None:
        self.layouts = 0
        self.refreshes: Counter[str] = Counter()
        self.ticks = 0
        self.line_renders = 0

    def reset(self) -> None:
        self.layouts = 0
        self.refreshes.clear()
        self.ticks = 0
        self.line_renders = 0


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """Instrument Textual: every screen layout, widget refresh, timer tick and log row drawn."""
    found = Counts()
    refresh_layout = Screen._refresh_layout
    refresh = Widget.refresh
    tick = Timer._tick
    render_line = LogLines.render_line

    def counting_layout(self: Screen[Any], *args: Any, **kwargs: Any) -> None:
        found.layouts += 1
        refresh_layout(self, *args, **kwargs)

    def counting_refresh(self: Widget, *args: Any, **kwargs: Any) -> Any:
        found.refreshes[type(self).__name__] += 1
        return refresh(self, *args, **kwargs)

    async def counting_tick(self: Timer, *, next_timer: float, count: int) -> None:
        found.ticks += 1
        await tick(self, next_timer=next_timer, count=count)

    def counting_render_line(self: LogLines, y: int) -> Any:
        found.line_renders += 1
        return render_line(self, y)

    monkeypatch.setattr(Screen, "_refresh_layout", counting_layout)
    monkeypatch.setattr(Widget, "refresh", counting_refresh)
    monkeypatch.setattr(Timer, "_tick", counting_tick)
    monkeypatch.setattr(LogLines, "render_line", counting_render_line)
    return found


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count the calls of `owner.name` (a function or method) in the one-item list returned."""
    calls = [0]
    original = getattr(owner, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


class PanesApp(App[None]):
    """A header, a table and the log and metrics panes side by side, like the dashboard."""

    CSS = """
    #top { height: 1; }
    #table { height: 6; }
    #lower { height: 1fr; }
    #lower > * { width: 1fr; }
    """

    def __init__(self, clock: Callable[[], float], config: Config | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.config = config or Config()

    def compose(self) -> ComposeResult:
        yield Static("header", id="top")
        yield DataTable(id="table")
        with Horizontal(id="lower"):
            yield LogView(id="log", max_lines=1000, max_fps=30, clock=self.clock)
            yield MetricsPanel(self.config, id="metrics")


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    """Run the app until `condition` holds (fail after 10 s)."""
    for _ in range(400):
        if condition():
            return
        await pilot.pause(0.025)
    raise AssertionError(f"timed out waiting for {what}")


def rows_reach(view: LogView, rows: int) -> Callable[[], bool]:
    """A condition: the log pane shows `rows` rows."""
    return lambda: view.lines_view.row_count() == rows


async def fed_log_pane(
    app: App[None], pilot: Pilot[Any], lines: list[str], size: int | None = None
) -> tuple[LogView, QueueSource]:
    """The app's log pane, fed `lines` from a queue source the test keeps, once it shows them
    all and the screen has settled."""
    view = app.query_one(LogView)
    source = QueueSource()
    view.set_source(source)
    source.put(lines, size=size)
    await until(pilot, rows_reach(view, len(lines)), f"the first {len(lines)} lines")
    await pilot.pause()
    return view, source


async def put_one_by_one(
    pilot: Pilot[Any], view: LogView, source: QueueSource, lines: list[str]
) -> None:
    """Put each line in a chunk of its own, waiting until the pane shows it."""
    rows = view.lines_view.row_count()
    for count, line in enumerate(lines, 1):
        source.put([line])
        await until(pilot, rows_reach(view, rows + count), line)
    await pilot.pause()


async def test_a_growing_log_repaints_the_log_pane_only(counts: Counts) -> None:
    app = PanesApp(clock=lambda: CLOCK)
    async with app.run_test(size=(120, 30)) as pilot:
        # Enough lines for the scrollbars to be there already, as in a real run.
        old = [f"old line {i} " + "x" * 150 for i in range(100)]
        view, source = await fed_log_pane(app, pilot, old, size=10_000)
        counts.reset()
        for i in range(40):
            source.put([f"step {i} loss=0.{i:04d}"], size=10_000 + i)
            await until(pilot, rows_reach(view, 101 + i), f"line {i}")
            await pilot.pause()
        assert view.lines_view.visible_lines()[-1] == "step 39 loss=0.0039"
        assert counts.line_renders > 0, "the log pane was redrawn"
        # Appending moves rows and the scrollbar; it never needs the screen laid out again.
        assert counts.layouts <= 2, f"{counts.layouts} layouts for 40 appended lines"
        for other in ("Static", "DataTable", "MetricsPanel", "Screen"):
            assert counts.refreshes[other] == 0, f"{other} repainted: {counts.refreshes}"
        # Unchanged title and subtitle: the pane's frame is not repainted.
        assert counts.refreshes["LogView"] == 0, counts.refreshes


async def test_idle_panes_run_no_timer_and_repaint_nothing(counts: Counts) -> None:
    now = [CLOCK]
    app = PanesApp(clock=lambda: now[0])
    async with app.run_test(size=(120, 30)) as pilot:
        view = app.query_one(LogView)
        await pilot.pause()
        counts.reset()
        await pilot.pause(0.6)
        assert counts.ticks == 0, "no source: no timer at all"
        assert sum(counts.refreshes.values()) == 0, counts.refreshes

        source = QueueSource()
        view.set_source(source)
        source.put(["one line"], size=9)
        await until(pilot, lambda: view.lines_view.row_count() == 1, "the line")
        assert "live" in str(view.border_subtitle)
        # Ten seconds later, with the fake clock standing still, the label reads the same
        # until the clock moves: looking again costs a tick, never a repaint.
        now[0] = CLOCK + 10
        view._update_title()
        assert "updated 10 seconds ago" in str(view.border_subtitle)
        await pilot.pause()
        counts.reset()
        await pilot.pause(0.6)
        assert counts.ticks <= 1, f"{counts.ticks} timer ticks while the log was quiet"
        assert sum(counts.refreshes.values()) == 0, counts.refreshes
        # When the label's time comes, it changes, and only then is the frame repainted.
        now[0] = CLOCK + 75
        await until(pilot, lambda: "a minute ago" in str(view.border_subtitle), "the minute label")
        assert counts.refreshes["LogView"] >= 1


async def test_metrics_pane_repaints_only_when_a_poll_finds_points(
    counts: Counts, tmp_path: Path
) -> None:
    config = Config()
    config.monitor.log_poll_seconds = 0.05
    run = tmp_path / "run"
    run.mkdir()
    log = run / "train.log"
    log.write_text("".join(f"step {i} loss={1 / (i + 1):.4f}\n" for i in range(30)))
    app = PanesApp(clock=lambda: CLOCK, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        panel = app.query_one(MetricsPanel)
        panel.set_run(log, run)
        await until(pilot, lambda: "loss" in panel.shown, "the loss series")
        await pilot.pause(0.2)
        counts.reset()
        await pilot.pause(0.6)  # about a dozen polls of an unchanged run
        assert counts.refreshes["MetricsPanel"] == 0, counts.refreshes
        with log.open("a") as handle:
            handle.write("step 30 loss=0.0300\n")
        await until(pilot, lambda: counts.refreshes["MetricsPanel"] > 0, "a repaint")
        assert counts.layouts == 0


async def test_scrollbar_follows_the_view_though_it_repaints_only_when_its_thumb_moves(
    counts: Counts,
) -> None:
    app = PanesApp(clock=lambda: CLOCK)
    async with app.run_test(size=(120, 30)) as pilot:
        view, source = await fed_log_pane(app, pilot, [f"line {i}" for i in range(600)])
        lines = view.lines_view
        bar = lines.vertical_scrollbar
        assert bar.window_virtual_size == 600
        assert bar.position == lines.max_scroll_y
        counts.reset()
        await put_one_by_one(pilot, view, source, [f"more {i}" for i in range(10)])
        # A one-cell thumb at the bottom of a long log does not move: no repaint of the bar,
        # but it knows the new geometry (mouse drags and later repaints use it).
        assert counts.refreshes["ScrollBar"] == 0, counts.refreshes
        assert bar.window_virtual_size == 610
        assert bar.position == lines.max_scroll_y
        lines.focus()
        await pilot.press("home")
        assert bar.position == 0
        assert counts.refreshes["ScrollBar"] >= 1, "the thumb moved to the top"


class HeaderApp(App[None]):
    """The header line above a table, sized as on the dashboard (`#header`: one line)."""

    CSS_PATH = Path(__file__).resolve().parents[2] / "runctl_tui" / "ui" / "app.tcss"

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield DataTable(id="table")


async def test_header_redraws_its_line_only_when_a_figure_changes(counts: Counts) -> None:
    snapshots = {Provider.LOCAL: ProviderSnapshot(Provider.LOCAL, fetched_at=CLOCK)}
    app = HeaderApp()
    async with app.run_test(size=(100, 10)) as pilot:
        header = app.query_one(HeaderBar)
        header.show(FleetTotals(spend_today=0.004), snapshots, CLOCK, 5.0, False)
        await pilot.pause()
        counts.reset()
        header.show(FleetTotals(spend_today=0.004), snapshots, CLOCK + 2, 5.0, False)
        await pilot.pause()
        assert counts.refreshes["HeaderBar"] == 0, "same text: nothing to draw"
        header.show(FleetTotals(spend_today=0.005), snapshots, CLOCK + 4, 5.0, False)
        await pilot.pause()
        assert "today $0.005" in str(header.render())
        assert counts.refreshes["HeaderBar"] == 1
        assert counts.layouts == 0, "a new figure in a one-line header needs no layout"


class LogApp(App[None]):
    """The log pane alone, at a given redraw cap."""

    def __init__(self, max_fps: int = 30) -> None:
        super().__init__()
        self.max_fps = max_fps

    def compose(self) -> ComposeResult:
        yield LogView(id="log", max_lines=1000, max_fps=self.max_fps, clock=lambda: CLOCK)


def textual_rows(lines: LogLines, crop: Region) -> list[list[Segment]]:
    """The rows as Textual's own styles cache draws them (what the row cache must equal)."""
    lines._styles_cache.clear()
    return [list(strip) for strip in Widget.render_lines(lines, crop)]


async def test_log_rows_drawn_from_the_row_cache_equal_textuals_own_drawing() -> None:
    app = LogApp()
    async with app.run_test(size=(60, 16)) as pilot:
        view, _ = await fed_log_pane(
            app,
            pilot,
            [f"step {i} loss=0.{i:04d} \x1b[31mred\x1b[0m\tafter a tab" for i in range(40)]
            + ["a long line " + "x" * 120],
        )
        lines = view.lines_view

        async def same(what: str) -> None:
            await pilot.pause()
            width, height = lines.size
            for crop in (Region(0, 0, width, height), Region(3, 2, width - 10, height - 4)):
                ours = [list(strip) for strip in lines.render_lines(crop)]
                assert ours == textual_rows(lines, crop), what

        await same("following the tail")
        view.action_search("loss=0.003")
        await same("search highlights")
        lines.scroll_to(x=7, y=5, animate=False, immediate=True)
        await same("scrolled sideways and up")
        view.action_toggle_wrap()
        await same("wrapped")
        lines.blur()
        await same("unfocused")
        view.action_filter("nothing matches this")
        await same("blank rows")


async def test_new_lines_draw_only_the_new_rows(counts: Counts) -> None:
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        view, source = await fed_log_pane(app, pilot, [f"line {i}" for i in range(200)])
        counts.reset()
        source.put(["new 1", "new 2", "new 3"])
        await until(pilot, rows_reach(view, 203), "the new lines")
        await pilot.pause()
        assert view.lines_view.visible_lines()[-1] == "new 3"
        # The view scrolled by three rows: every row on screen changed place, but only the
        # three new ones are drawn (Textual's cache is per screen row: it redrew all 28).
        assert 1 <= counts.line_renders <= 3, f"{counts.line_renders} rows drawn for 3 new lines"


async def test_a_line_after_a_quiet_spell_is_drawn_at_once_a_stream_once_a_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    syncs = count_calls(monkeypatch, LogLines, "sync")
    app = LogApp(max_fps=1)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.query_one(LogView)
        source = QueueSource()
        view.set_source(source)
        await pilot.pause()
        syncs[0] = 0
        source.put(["first"])
        # No waiting for a timer: the line is in the view after a few message-loop turns
        # (a paused one-second timer used to take a whole period to draw it).
        for _ in range(5):
            await pilot.pause()
        assert view.lines_view.row_count() == 1, "the first line waited for a frame timer"
        assert syncs[0] == 1
        for i in range(5):
            source.put([f"more {i}"])
            await pilot.pause()
        # Within the period the stream waits for one frame, whatever the number of chunks.
        assert syncs[0] == 1, "lines that keep coming are drawn together"
        assert view._flush_timer is not None
        await until(pilot, rows_reach(view, 6), "the stream")
        assert syncs[0] == 2


async def test_a_growing_file_size_does_not_repaint_the_pane_frame_each_frame(
    counts: Counts,
) -> None:
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        view, source = await fed_log_pane(app, pilot, ["first"], size=10_000)
        assert "9.8 KiB" in str(view.border_subtitle)
        counts.reset()
        for i in range(10):
            # Each chunk changes the size as shown (9.8, 10.7, 11.7 ... KiB).
            source.put([f"line {i}"], size=10_000 + 1_000 * (i + 1))
            await until(pilot, rows_reach(view, i + 2), f"line {i}")
        await pilot.pause()
        # A subtitle change repaints the whole pane with its borders; the size may be a few
        # seconds old instead.
        assert counts.refreshes["LogView"] == 0, counts.refreshes
        assert "9.8 KiB" in str(view.border_subtitle)


class HiddenPanesApp(App[None]):
    """The checkpoint and metrics panes, each in a box the test can hide."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="ckpt-box"):
                yield CheckpointBrowser(clock=lambda: CLOCK)
            with Vertical(id="metrics-box"):
                yield MetricsPanel(self.config)


async def test_a_hidden_checkpoint_pane_lists_nothing_until_shown(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "ckpt-step000020.json").write_text("{}")
    app = HiddenPanesApp(Config())
    async with app.run_test(size=(120, 30)) as pilot:
        browser = app.query_one(CheckpointBrowser)
        browser.set_directory(folder)
        await until(pilot, lambda: len(browser.entries) == 1, "the first listing")
        box = app.query_one("#ckpt-box")
        box.display = False
        await until(pilot, lambda: not browser._visible.is_set(), "the pane hidden")
        scans = browser.scans
        for step in (40, 60, 80):
            (folder / f"ckpt-step{step:06d}.json").write_text("{}")
        await pilot.pause(1.5)  # well past the watch's debounce: a shown pane lists by now
        assert browser.scans == scans, "a hidden pane listed the folder"
        assert len(browser.entries) == 1
        box.display = True
        await until(pilot, lambda: len(browser.entries) == 4, "the listing once shown")
        assert browser.table.row_count == 4


async def test_a_hidden_metrics_pane_does_not_poll_until_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls = count_calls(monkeypatch, metrics_panel, "_poll_and_copy")
    config = Config()
    config.monitor.log_poll_seconds = 0.05
    run = tmp_path / "run"
    run.mkdir()
    log = run / "train.log"
    log.write_text("".join(f"step {i} loss={1 / (i + 1):.4f}\n" for i in range(10)))
    app = HiddenPanesApp(config)
    async with app.run_test(size=(120, 30)) as pilot:
        panel = app.query_one(MetricsPanel)
        panel.set_run(log, run)
        await until(pilot, lambda: "loss" in panel.shown, "the loss series")
        box = app.query_one("#metrics-box")
        box.display = False
        await until(pilot, lambda: not panel._visible.is_set(), "the pane hidden")
        await pilot.pause(0.1)  # a poll already under way finishes
        before = polls[0]
        with log.open("a") as handle:
            handle.write("step 10 loss=0.0500\n")
        await pilot.pause(0.6)  # about a dozen poll periods
        assert polls[0] == before, f"{polls[0] - before} polls while hidden"
        box.display = True
        await until(pilot, lambda: len(panel._data["loss"][1]) == 11, "the missed point")


class TableApp(App[None]):
    """The machines table alone."""

    def compose(self) -> ComposeResult:
        yield MachinesTable(id="machines")


def pods(utilisation: float, cost: float) -> list[FleetRow]:
    """Three running pods; the second one's GPU% and accrued cost vary."""
    return [
        FleetRow(
            Machine(
                Provider.RUNPOD,
                f"pod{index}",
                f"bench-pod-{index}",
                MachineState.RUNNING,
                gpu_type="NVIDIA GeForce RTX 4090",
                gpu_count=1,
                price_per_hour=0.44,
                started_at=CLOCK - 600,
                accrued_cost=cost if index == 1 else 0.073,
                gpus=(GpuInfo(0, utilisation if index == 1 else 50.0),),
            )
        )
        for index in range(3)
    ]


def table_lines(table: MachinesTable) -> list[list[Segment]]:
    table._styles_cache.clear()
    return [list(strip) for strip in table.render_lines(Region(0, 0, *table.size))]


async def test_a_changed_figure_renders_its_cell_only_and_the_table_reads_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = TableApp()
    async with app.run_test(size=(140, 10)) as pilot:
        table = app.query_one(MachinesTable)
        table.update_rows(pods(30.0, 0.05), CLOCK)
        await pilot.pause()
        table_lines(table)  # every cell rendered once
        rendered = [0]
        render_cell = DataTable._render_cell

        def counting_render_cell(self: DataTable[Any], *args: Any, **kwargs: Any) -> Any:
            before = len(self._cell_render_cache)
            result = render_cell(self, *args, **kwargs)
            rendered[0] += len(self._cell_render_cache) > before
            return result

        monkeypatch.setattr(DataTable, "_render_cell", counting_render_cell)
        # Same widths: 30% -> 45%, $0.050 -> $0.060.
        table.update_rows(pods(45.0, 0.06), CLOCK)
        await pilot.pause()
        lines = table_lines(table)
        # Textual's update_cell forgets every rendered cell: all 52 of them were rendered again.
        assert rendered[0] == 2, f"{rendered[0]} cells rendered for two changed figures"
        assert "45%" in str(table.get_row("runpod:pod1"))
        # What the cache shows is what a table drawn from scratch shows.
        table._update_count += 1
        table._line_cache.clear()
        assert lines == table_lines(table)
        # Narrower: still one cell, the column keeps its width.
        rendered[0] = 0
        table.update_rows(pods(5.0, 0.06), CLOCK)
        await pilot.pause()
        table_lines(table)
        assert rendered[0] == 1, f"{rendered[0]} cells rendered for one narrower figure"
        # A wider figure lays the column out again (all is redrawn); columns only widen until
        # the rows are rebuilt, so a figure that shrinks again moves nothing.
        cost = table.columns[ColumnKey("cost")]
        assert cost.content_width == len("$0.073")
        table.update_rows(pods(5.0, 1234.5), CLOCK)
        await pilot.pause()
        assert cost.content_width == len("$1,234.50")
        assert "$1,234.50" in "".join(s.text for line in table_lines(table) for s in line)
        rendered[0] = 0
        table.update_rows(pods(5.0, 0.06), CLOCK)
        await pilot.pause()
        table_lines(table)
        assert rendered[0] == 1
        assert cost.content_width == len("$1,234.50")
        assert "$0.060" in "".join(s.text for line in table_lines(table) for s in line)


async def test_metrics_arriving_continuously_are_drawn_once_a_second_not_per_poll(
    counts: Counts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = [0]
    poll = metrics_panel._poll_and_copy

    def counting_poll(tracker: Any) -> Any:
        data = poll(tracker)
        found[0] += data is not None
        return data

    def finds(polls: int) -> Callable[[], bool]:
        return lambda: found[0] >= polls

    monkeypatch.setattr(metrics_panel, "_poll_and_copy", counting_poll)
    config = Config()
    config.monitor.log_poll_seconds = 0.05
    run = tmp_path / "run"
    run.mkdir()
    log = run / "train.log"
    log.write_text("step 0 loss=1.0000\n")
    app = PanesApp(clock=lambda: CLOCK, config=config)
    async with app.run_test(size=(120, 30)) as pilot:
        panel = app.query_one(MetricsPanel)
        panel.set_run(log, run)
        await until(pilot, lambda: "loss" in panel.shown, "the loss series")
        await pilot.pause()
        counts.reset()
        found[0] = 0
        for step in range(1, 5):
            with log.open("a") as handle:
                handle.write(f"step {step} loss={1 / (step + 1):.4f}\n")
            await until(pilot, finds(step), f"a poll finding step {step}")
        # Four polls found points within a second: the first is drawn at once, the others
        # together a second later (each used to be drawn: four repaints).
        assert counts.refreshes["MetricsPanel"] <= 2, counts.refreshes
        await until(pilot, lambda: "0.2" in str(panel.render()), "the last point drawn")
        assert len(panel._data["loss"][1]) == 5


async def test_a_new_listing_redraws_no_unchanged_cell_nor_the_details(
    counts: Counts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    updated = count_calls(monkeypatch, DataTable, "update_cell")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (20, 40):
        (folder / f"ckpt-step{step:06d}.json").write_text("{}")
    app = HiddenPanesApp(Config())
    async with app.run_test(size=(120, 30)) as pilot:
        browser = app.query_one(CheckpointBrowser)
        browser.set_directory(folder)
        await until(pilot, lambda: len(browser.entries) == 2, "the listing")
        details = app.query_one("#ckpt-details", Static)
        await until(pilot, lambda: "ckpt-step" in str(details.render()), "the details")
        shown = str(details.render())
        await pilot.pause()
        counts.reset()
        scans = browser.scans
        browser.action_refresh()  # the same folder listed again: nothing changed
        await until(pilot, lambda: browser.scans > scans, "the second listing")
        await pilot.pause()
        assert updated[0] == 0, f"{updated[0]} cells set to what they showed"
        (folder / "ckpt-step000060.json").write_text("{}")
        await until(pilot, lambda: len(browser.entries) == 3, "the new checkpoint")
        await pilot.pause()
        # The rows were rebuilt around the same selected checkpoint: its details stand (they
        # were set twice per listing, each time laying out the screen).
        assert counts.refreshes["Static"] <= 1, counts.refreshes  # the title line
        assert str(details.render()) == shown


def test_the_trend_looks_at_points_one_by_one_only_when_some_are_not_finite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = count_calls(monkeypatch, math, "isfinite")
    values = [1.0 / (i + 1) for i in range(6000)]
    assert str(MetricsPanel._trend("loss", values)) == " ↓"
    # Drawn every second for every series: 5000 checks each time was a third of a repaint.
    assert calls[0] <= 2, f"{calls[0]} points checked one by one"
    rising = [*values, math.nan, *(float(i) for i in range(1000))]
    assert str(MetricsPanel._trend("loss", rising)) == " ↑"
    assert str(MetricsPanel._trend("loss", [math.nan, math.inf])) == " ·"


async def test_a_growing_log_repaints_its_scrollbar_when_the_thumb_crosses_a_cell(
    counts: Counts,
) -> None:
    app = PanesApp(clock=lambda: CLOCK)
    async with app.run_test(size=(120, 30)) as pilot:
        view, source = await fed_log_pane(app, pilot, [f"line {i}" for i in range(100)])
        lines = view.lines_view
        bar = lines.vertical_scrollbar
        counts.reset()
        await put_one_by_one(pilot, view, source, [f"more {i}" for i in range(10)])
        # The thumb (about four cells of 21) shrank and slid by eighths of a cell on every
        # line, each time repainting the bar; its ends stayed in the same cells.
        assert counts.refreshes["ScrollBar"] == 0, counts.refreshes
        assert bar.window_virtual_size == 110
        assert bar.position == lines.max_scroll_y
        lines.focus()
        await pilot.press("up")
        assert counts.refreshes["ScrollBar"] >= 1, "the user's scroll is drawn exactly"
