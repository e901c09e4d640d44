"""The log pane under Textual's Pilot: following, pausing, search, filter, wrap, save, sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Static

from runctl_tui.core.logs import FileLogSource
from runctl_tui.core.logsource import LogChunk, LogSource
from runctl_tui.ui.widgets.log_view import (
    CURRENT_MATCH_STYLE,
    MATCH_STYLE,
    LogLines,
    LogView,
)

CLOCK = 1_790_000_000.0


class QueueSource:
    """A LogSource fed by the test, recording whether its follow was closed."""

    def __init__(self, description: str = "runs/demo/train.log") -> None:
        self._description = description
        self.queue: asyncio.Queue[LogChunk] = asyncio.Queue()
        self.closed = False
        self.started = False

    @property
    def description(self) -> str:
        return self._description

    def put(self, lines: list[str] | None = None, **kwargs: Any) -> None:
        self.queue.put_nowait(LogChunk(lines=tuple(lines or ()), **kwargs))

    async def follow(self, initial_lines: int = 200) -> AsyncIterator[LogChunk]:
        self.started = True
        try:
            while True:
                yield await self.queue.get()
        finally:
            self.closed = True


class LogApp(App[None]):
    def __init__(self, max_lines: int = 1000) -> None:
        super().__init__()
        self.max_lines = max_lines

    def compose(self) -> ComposeResult:
        yield LogView(id="log", max_lines=self.max_lines, max_fps=30, clock=lambda: CLOCK)

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    @property
    def lines(self) -> LogLines:
        return self.query_one(LogLines)


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while True:
        if condition():
            return
        assert loop.time() < end, f"timed out waiting for {what}"
        await pilot.pause(0.02)


def marker_text(app: LogApp) -> str:
    return str(app.query_one("#log-marker", Static).render())


async def test_follows_the_tail_and_title_shows_source_size_freshness() -> None:
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        source = QueueSource()
        app.log_view.set_source(source)
        source.put([f"line {i}" for i in range(200)], size=123_456)
        await until(pilot, lambda: app.lines.visible_lines()[-1:] == ["line 199"], "the tail")
        assert app.lines.following
        source.put(["line 200"], partial="epoch 1  40%")
        await until(pilot, lambda: app.lines.visible_lines()[-1:] == ["epoch 1  40%"], "partial")
        assert app.lines.visible_lines()[-2] == "line 200"
        view = app.log_view
        assert view.border_title == "log: runs/demo/train.log"
        assert "120.6 KiB" in str(view.border_subtitle) and "live" in str(view.border_subtitle)
        source.put(notice="runs/demo/train.log truncated; reading it from the start")
        await until(pilot, lambda: "truncated" in str(view.border_subtitle), "the notice")
        assert not view.has_class("-paused")


async def test_scrolling_up_pauses_with_counter_and_end_or_f_resumes() -> None:
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        source = QueueSource()
        app.log_view.set_source(source)
        source.put([f"line {i}" for i in range(100)])
        await until(pilot, lambda: app.lines.visible_lines()[-1:] == ["line 99"], "the tail")
        app.lines.focus()
        await pilot.pause()  # focus moves on the next message-loop turn
        await pilot.press("pageup")
        assert not app.lines.following
        assert app.log_view.has_class("-paused")
        shown = app.lines.visible_lines()
        assert "line 99" not in shown
        source.put([f"new {i}" for i in range(7)])
        await until(pilot, lambda: "7 new lines" in marker_text(app), "the counter")
        assert "paused" in marker_text(app)
        assert app.lines.visible_lines() == shown, "a paused view does not move"
        await pilot.press("end")
        assert app.lines.following and not app.log_view.has_class("-paused")
        await until(pilot, lambda: app.lines.visible_lines()[-1:] == ["new 6"], "resumed tail")
        await pilot.press("up")
        assert not app.lines.following
        await pilot.press("f")
        assert app.lines.following
        assert app.lines.visible_lines()[-1] == "new 6"


async def test_search_highlights_and_n_N_move_between_matches() -> None:
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        source = QueueSource()
        app.log_view.set_source(source)
        lines = [f"step {i} loss 0.{i:03d}" for i in range(300)]
        for i in (20, 150, 280):
            lines[i] = f"step {i} ERROR: NaN in loss"
        source.put(lines)
        await until(pilot, lambda: app.lines.visible_lines()[-1:] == [lines[-1]], "the tail")
        app.lines.focus()
        await pilot.pause()  # focus moves on the next message-loop turn
        await pilot.press("slash")
        await pilot.press(*"error", "enter")
        view = app.lines
        assert view.current_match == 280
        assert not view.following
        assert lines[280] in view.visible_lines()
        await pilot.press("N")
        assert view.current_match == 150 and lines[150] in view.visible_lines()
        await pilot.press("N")
        assert view.current_match == 20 and lines[20] in view.visible_lines()
        await pilot.press("n")
        assert view.current_match == 150
        # The match is drawn highlighted: find its row and look at the rendered segments.
        row = view.visible_lines().index(lines[150])
        strip = view.render_line(row)
        current = CURRENT_MATCH_STYLE.bgcolor
        highlighted = "".join(s.text for s in strip if s.style and s.style.bgcolor == current)
        assert highlighted == "ERROR"
        await pilot.press("N")  # now 20 is current; 150 is drawn as an ordinary match
        strip = view.render_line(view.visible_lines().index(lines[20]))
        assert "".join(s.text for s in strip if s.style and s.style.bgcolor == current) == "ERROR"
        (plain_match,) = view._render_line_strips(150)
        other = MATCH_STYLE.bgcolor
        assert (
            "".join(s.text for s in plain_match if s.style and s.style.bgcolor == other) == "ERROR"
        )


async def test_filter_shows_only_matching_lines_and_reports_bad_regex() -> None:
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        source = QueueSource()
        app.log_view.set_source(source)
        source.put([f"step {i} {'val_loss' if i % 10 == 0 else 'loss'}={i}" for i in range(100)])
        await until(pilot, lambda: len(app.lines.entries) == 100, "all lines")
        app.lines.focus()
        await pilot.pause()  # focus moves on the next message-loop turn
        await pilot.press("ampersand")
        await pilot.press(*"val_loss=\\d0")
        assert list(app.lines.entries) == [10, 20, 30, 40, 50, 60, 70, 80, 90]
        error = app.query_one("#log-error", Static)
        assert not error.has_class("-shown")
        await pilot.press("(")
        assert error.has_class("-shown")
        assert "invalid regex" in str(error.render())
        assert list(app.lines.entries) == [10, 20, 30, 40, 50, 60, 70, 80, 90], "kept"
        await pilot.press("backspace", "enter")
        assert not error.has_class("-shown")
        source.put(["step 100 val_loss=100", "step 101 loss=101"])
        await until(pilot, lambda: app.lines.entries[-1] == 100, "new matching line")
        assert 101 not in app.lines.entries
        assert "filter" in str(app.log_view.border_subtitle)
        app.log_view.action_filter("")
        assert len(app.lines.entries) == 102


async def test_wrap_toggle_and_save(tmp_path: Path) -> None:
    app = LogApp()
    async with app.run_test(size=(60, 20)) as pilot:
        source = QueueSource()
        app.log_view.set_source(source)
        source.put(["short", "x" * 200, "\x1b[32mgreen\x1b[0m"], partial="50%")
        await until(pilot, lambda: len(app.lines.entries) == 3, "lines")
        assert app.lines.row_count() == 4
        app.lines.focus()
        await pilot.pause()  # focus moves on the next message-loop turn
        await pilot.press("w")
        width = app.lines.scrollable_content_region.width
        assert app.lines.row_count() == 1 + -(-200 // width) + 1 + 1
        await pilot.press("w")
        assert app.lines.row_count() == 4
        target = tmp_path / "saved.txt"
        app.log_view.action_save(str(target))
        await until(pilot, lambda: target.exists(), "the saved file")
        assert target.read_text().splitlines() == ["short", "x" * 200, "green", "50%"]
        await pilot.press("ctrl+s")
        prompt = app.query_one("#log-prompt")
        assert app.log_view.has_class("-prompting") and prompt.has_focus
        await pilot.press("escape")
        assert not app.log_view.has_class("-prompting")


async def test_set_source_cancels_the_previous_follow_and_bounds_the_buffer() -> None:
    app = LogApp(max_lines=500)
    async with app.run_test(size=(100, 30)) as pilot:
        first, second = QueueSource("a.log"), QueueSource("b.log")
        app.log_view.set_source(first)
        await until(pilot, lambda: first.started, "first follow")
        first.put([f"a {i}" for i in range(10_000)])
        await until(pilot, lambda: app.log_view.buffer.total == 10_000, "first lines")
        assert len(app.log_view.buffer) == 500
        assert len(app.lines.entries) == 500
        app.log_view.set_source(second)
        await until(pilot, lambda: first.closed and second.started, "the switch")
        second.put(["b 0"])
        await until(pilot, lambda: app.lines.visible_lines() == ["b 0"], "second source")
        app.log_view.set_source(None)
        await until(pilot, lambda: second.closed, "follow stopped")
        assert app.lines.visible_lines() == []
        assert app.log_view.border_subtitle == "no source"


async def test_real_file_source_and_a_flood_keep_the_keyboard_responsive(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"old {i}\n" for i in range(50)))
    app = LogApp(max_lines=2000)
    async with app.run_test(size=(100, 30)) as pilot:
        source: LogSource = FileLogSource(log, poll_interval=0.05)
        app.log_view.set_source(source)
        await until(pilot, lambda: app.lines.visible_lines()[-1:] == ["old 49"], "file tail")
        app.lines.focus()
        await pilot.pause()  # focus moves on the next message-loop turn
        payload = "".join(f"flood {i} " + "y" * 60 + "\n" for i in range(200_000))
        with log.open("a") as handle:
            handle.write(payload)
        # While the pane catches up on 200k lines, a key still gets through.
        await pilot.press("w")
        assert app.lines.wrap
        await until(
            pilot, lambda: app.lines.visible_lines()[-1:] == [f"flood 199999 {'y' * 60}"], "end"
        )
        assert len(app.log_view.buffer) == 2000


def test_snapshot_paused_with_search_highlight(snap_compare: Any) -> None:
    """The pane paused with new lines waiting, a search match highlighted, a progress line."""
    app = LogApp()

    async def run_before(pilot: Pilot[Any]) -> None:
        source = QueueSource()
        app.log_view.set_source(source)
        lines = [f"epoch 1 step {i:3d} loss {2.0 / (i + 1):.4f}" for i in range(60)]
        lines[40] = "\x1b[31mWARNING\x1b[0m step  40 grad norm 1e4, clipping"
        source.put(lines, size=52_430)
        await until(pilot, lambda: app.log_view.buffer.total == 60, "lines")
        app.log_view.flush_now()
        app.lines.focus()
        await pilot.pause()  # focus moves on the next message-loop turn
        await pilot.press("pageup")
        source.put(
            [f"epoch 2 step {i:3d} loss 0.1" for i in range(12)],
            partial="epoch 2  35%|███▌      | 35/100",
        )
        await until(
            pilot, lambda: app.log_view.buffer.total == 72 or bool(app.log_view._incoming), "more"
        )
        app.log_view.flush_now()
        await pilot.press("slash", *"grad", "enter")
        await pilot.pause()
        state["match"] = app.lines.current_match
        state["marker"] = marker_text(app)

    state: dict[str, Any] = {}
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)
    assert state["match"] == 40
    assert "12 new lines" in state["marker"]
