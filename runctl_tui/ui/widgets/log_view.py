"""The log pane: follows a `LogSource` at the tail, cheaply, whatever the writer's pace.

Only the visible rows are rendered (Line API), from a bounded `LineBuffer`. Chunks from the
source wait until the next frame; the screen is updated at most `max_fps` times a second: a line
after a quiet spell is drawn at once, lines that keep coming are drawn together once a period
(a log at 10 lines/s is repainted twice a second by default, not ten times).
Scrolling up pauses following (a marker counts the lines that arrived since); `End`/`f`
resumes. `/` searches (highlights, `n`/`N`), `&` filters by regex, `w` wraps, `s` saves.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.events import Resize
from textual.geometry import Offset, Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from runctl_tui.core.logs import LineBuffer, strip_ansi
from runctl_tui.core.logsource import LogChunk, LogSource

PARTIAL = -1
"""Row number standing for the unterminated (progress) line."""
SIZE_REFRESH_SECONDS = 5.0
"""While lines keep coming, the file size in the subtitle is brought up to date this often
(a subtitle change repaints the whole pane, borders and all)."""
MATCH_STYLE = Style(bgcolor="yellow", color="black")
CURRENT_MATCH_STYLE = Style(bgcolor="dark_orange", color="black", bold=True)


def _plain(line: str) -> str:
    plain = strip_ansi(line)
    return plain.expandtabs(8) if "\t" in plain else plain


def _height(line: str, width: int) -> int:
    """Rows `line` takes when folded at `width` cells."""
    plain = _plain(line)
    cells = len(plain) if plain.isascii() else cell_len(plain)
    return max(1, -(-cells // width))


def _thumb(bar: ScrollBar) -> tuple[int, int, int]:
    """Where a scrollbar's thumb is drawn, in eighths of a cell (as Textual draws it)."""
    size = bar.size.height if bar.vertical else bar.size.width
    virtual, window, position = bar.window_virtual_size, bar.window_size, bar.position
    if not (window and size and virtual and size != virtual and virtual != window):
        return (size, 0, 0)
    thumb = max(1.0, window / (virtual / size))
    start = int((size - thumb) * (position / (virtual - window)) * 8)
    return (size, start, start + math.ceil(thumb * 8))


def _thumb_cells(thumb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The cells a thumb touches: (bar size, first cell, cell after the last)."""
    size, start, end = thumb
    return (size, start // 8, -(-end // 8))


def _smart_case_pattern(term: str) -> re.Pattern[str]:
    flags = 0 if any(c.isupper() for c in term) else re.IGNORECASE
    return re.compile(re.escape(term), flags)


class LogLines(ScrollView, can_focus=True):
    """The rows of the log pane: a Line API view over a `LineBuffer`, filtered and wrapped."""

    DEFAULT_CSS = """
    LogLines {
        height: 1fr;
        background: $surface;
    }
    """

    class Paused(Message):
        """Following stopped or resumed (the pane updates its marker)."""

    def __init__(self, buffer: LineBuffer, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.buffer = buffer
        self.following = True
        """Whether new lines scroll the view to the end."""
        self.new_while_paused = 0
        """Lines (that pass the filter) added since following paused."""
        self.wrap = False
        self.filter: re.Pattern[str] | None = None
        self.search: re.Pattern[str] | None = None
        self.current_match: int | None = None
        """Line number of the match `n`/`N` moved to."""
        self._entries: deque[int] = deque()
        """Line numbers shown (after the filter), oldest first."""
        self._rows: deque[tuple[int, int]] = deque()
        """With wrap on: (line number, row within the line) for every screen row."""
        self._seen_total = 0
        self._max_width = 0
        self._programmatic = False
        self._cache: LRUCache[tuple[int, int], list[Strip]] = LRUCache(1024)
        self._generation = 0
        self._frame: tuple[Offset, int, Style] | None = None
        """(scroll offset, content width, style) while a frame is drawn."""
        self._row_cache: LRUCache[tuple[object, ...], Strip] = LRUCache(512)
        """Finished rows by (line number and row within it, how they were drawn)."""
        self._painted_thumbs: dict[bool, tuple[int, int, int]] = {}
        """The thumb each scrollbar (by `vertical`) was last repainted for."""

    # --- model ------------------------------------------------------------------------------

    def _wrap_width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _line_text(self, number: int) -> str:
        if number == PARTIAL:
            return self.buffer.partial or ""
        return self.buffer.line(number)

    def _matches_filter(self, line: str) -> bool:
        return self.filter is None or self.filter.search(_plain(line)) is not None

    def _add_entries(self, start: int, stop: int) -> int:
        """Show lines `start`..`stop - 1` of the buffer (those passing the filter)."""
        if stop <= start:
            return 0
        lines = self.buffer.newest(stop - start)
        numbers: Iterable[int] = range(start, stop)
        if self.filter is not None:
            kept = [
                (n, line)
                for n, line in zip(numbers, lines, strict=True)
                if self._matches_filter(line)
            ]
            numbers = [n for n, _ in kept]
            lines = [line for _, line in kept]
        if not lines:
            return 0
        self._entries.extend(numbers)
        # ASCII lines are as wide as they are long (escape codes only over-count, harmlessly).
        width = max(len(x) if x.isascii() else cell_len(_plain(x)) for x in lines)
        self._max_width = max(self._max_width, width)
        if self.wrap:
            wrap_width = self._wrap_width()
            rows = self._rows
            for number, line in zip(numbers, lines, strict=True):
                height = _height(line, wrap_width)
                if height == 1:
                    rows.append((number, 0))
                else:
                    rows.extend((number, row) for row in range(height))
        return len(lines)

    def _drop_old(self) -> int:
        """Forget entries that fell off the buffer; return how many screen rows went."""
        first = self.buffer.first_number
        removed = 0
        while self._entries and self._entries[0] < first:
            self._entries.popleft()
            if not self.wrap:
                removed += 1
        while self._rows and self._rows[0][0] < first:
            self._rows.popleft()
            removed += 1
        return removed

    def rebuild(self) -> None:
        """Recompute the rows from the buffer (after a filter, wrap or width change)."""
        self._entries.clear()
        self._rows.clear()
        self._max_width = 0
        self._seen_total = self.buffer.total
        self._add_entries(self.buffer.first_number, self.buffer.total)
        self._generation += 1
        self._cache.clear()
        self._update_virtual_size()
        if self.following:
            self._scroll_to_end()
        # Once the view is where it will be drawn (an earlier sync would see the grown log at
        # the old position, and repaint the bar for a thumb that is not drawn in the end).
        self._sync_scrollbars(exact=True)
        self.refresh()

    def sync(self) -> None:
        """Take in the lines that reached the buffer since the last frame."""
        total = self.buffer.total
        start = max(self._seen_total, self.buffer.first_number)
        self._seen_total = total
        removed = self._drop_old()
        added = self._add_entries(start, total)
        if not self.following:
            self.new_while_paused += added
        self._cache.discard((PARTIAL, self._generation))
        self._update_virtual_size()
        if self.following:
            self._scroll_to_end()
        elif removed:
            # Keep the lines being read in place while old ones fall off the front.
            self._set_scroll_y(self.scroll_y - removed)
        self._sync_scrollbars()
        self.refresh()

    def _show_partial(self) -> bool:
        partial = self.buffer.partial
        return bool(partial) and (self.filter is None or self._matches_filter(partial or ""))

    def row_count(self) -> int:
        """Screen rows of the whole (filtered, wrapped) log."""
        rows = len(self._rows) if self.wrap else len(self._entries)
        return rows + (1 if self._show_partial() else 0)

    def _update_virtual_size(self) -> None:
        width = self._wrap_width() if self.wrap else self._max_width
        size = Size(width, self.row_count())
        if size == self.virtual_size:
            return
        # Assigning `virtual_size` would lay out the whole screen (it is a layout reactive),
        # ten times a second while a log grows. This view has a fixed size: more rows only
        # move its scrollbars, which lay the screen out themselves when they appear or go.
        self.set_reactive(LogLines.virtual_size, size)
        self._refresh_scrollbars()
        self.refresh()

    def _sync_scrollbars(self, exact: bool = False) -> None:
        """Give the scrollbars the view's geometry; repaint one only when its thumb moved.

        Args:
            exact: Repaint for any move (the user scrolls); else only when the thumb's ends
                cross a cell (the log grows).
        """
        # Textual repaints a scrollbar whenever the position changes, i.e. on every line that
        # arrives. The thumb of a growing log shrinks and slides by eighths of a cell each
        # frame; drawn a fraction of a cell late, it looks the same (a 48-row bar costs ~3 ms).
        width, height = self.scrollable_content_region.size
        virtual = self.virtual_size
        if self.show_vertical_scrollbar:
            bar = self.vertical_scrollbar
            self._sync_bar(bar, virtual.height, height, self.scroll_y, exact)
        if self.show_horizontal_scrollbar:
            bar = self.horizontal_scrollbar
            self._sync_bar(bar, virtual.width, width, self.scroll_x, exact)

    def _sync_bar(
        self, bar: ScrollBar, virtual: int, window: int, position: float, exact: bool
    ) -> None:
        bar.set_reactive(ScrollBar.window_virtual_size, virtual)
        bar.set_reactive(ScrollBar.window_size, window)
        bar.set_reactive(ScrollBar.position, bar.validate_position(position))
        thumb = _thumb(bar)
        painted = self._painted_thumbs.get(bar.vertical)
        self._painted_thumbs[bar.vertical] = thumb
        if painted is None or not painted[0]:
            # A bar that just appeared (or was not laid out yet) is drawn with its layout,
            # from the geometry set here.
            if exact:
                bar.refresh()
        elif thumb != painted if exact else _thumb_cells(thumb) != _thumb_cells(painted):
            bar.refresh()
        else:
            self._painted_thumbs[bar.vertical] = painted

    def row_at(self, y: int) -> tuple[int, int] | None:
        """(line number, row within it) at screen row `y` of the whole log."""
        body = len(self._rows) if self.wrap else len(self._entries)
        if 0 <= y < body:
            return self._rows[y] if self.wrap else (self._entries[y], 0)
        if y == body and self._show_partial():
            return (PARTIAL, 0)
        return None

    def first_row_of(self, number: int) -> int | None:
        """Screen row where line `number` starts, or None when it is not shown."""
        if self.wrap:
            return next(
                (i for i, (n, sub) in enumerate(self._rows) if n == number and not sub), None
            )
        try:
            return self._entries.index(number)
        except ValueError:
            return None

    @property
    def entries(self) -> deque[int]:
        """Numbers of the lines shown, oldest first."""
        return self._entries

    def visible_lines(self) -> list[str]:
        """Plain text of the rows on screen (tests and screenshots)."""
        top = round(self.scroll_y)
        lines = []
        for y in range(top, top + self.scrollable_content_region.height):
            row = self.row_at(y)
            if row is None:
                break
            number, sub = row
            if sub == 0:
                lines.append(_plain(self._line_text(number)))
        return lines

    # --- scrolling and following --------------------------------------------------------------

    def _set_scroll_y(self, y: float) -> None:
        # A running scroll animation would fight the position set here.
        self.app.animator.force_stop_animation(self, "scroll_y")
        self._programmatic = True
        try:
            self.scroll_y = max(0, min(y, self.max_scroll_y))
        finally:
            self._programmatic = False

    def _scroll_to_end(self) -> None:
        self._set_scroll_y(self.max_scroll_y)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # ScrollView's watcher would repaint the scrollbar on every change.
        self._sync_scrollbars(exact=not self._programmatic)
        if round(old_value) != round(new_value):
            self.refresh(self.size.region)
        # Only the user moves the view up from the bottom; a clamp after a resize lands on it.
        at_bottom = new_value >= self.max_scroll_y
        if self.following and not self._programmatic and new_value < old_value and not at_bottom:
            self.pause()

    def pause(self) -> None:
        """Stop following the tail (the view stays where it is)."""
        if self.following:
            self.following = False
            self.new_while_paused = 0
            self.post_message(self.Paused())

    def resume(self) -> None:
        """Follow the tail again."""
        self.following = True
        self.new_while_paused = 0
        self._scroll_to_end()
        self.refresh()
        self.post_message(self.Paused())

    def scroll_to_line(self, number: int) -> None:
        """Pause and bring line `number` into view (a third from the top)."""
        row = self.first_row_of(number)
        if row is None:
            return
        self.pause()
        height = self.scrollable_content_region.height
        if not (self.scroll_y <= row < self.scroll_y + height):
            self._set_scroll_y(row - height // 3)
        self.refresh()

    def action_scroll_end(self) -> None:
        """End resumes following."""
        self.resume()

    # A log scrolls at once: animated or deferred scrolling would lag behind keys and tail.
    def _scroll_by_keys(self, y: float) -> None:
        self.scroll_to(y=max(0, y), animate=False, immediate=True)

    def action_scroll_up(self) -> None:
        """Up one row (pauses following)."""
        self._scroll_by_keys(self.scroll_y - 1)

    def action_scroll_down(self) -> None:
        """Down one row."""
        self._scroll_by_keys(self.scroll_y + 1)

    def action_page_up(self) -> None:
        """Up one page (pauses following)."""
        self._scroll_by_keys(self.scroll_y - self.scrollable_content_region.height)

    def action_page_down(self) -> None:
        """Down one page."""
        self._scroll_by_keys(self.scroll_y + self.scrollable_content_region.height)

    def action_scroll_home(self) -> None:
        """To the oldest line (pauses following)."""
        self._scroll_by_keys(0)

    def on_resize(self, event: Resize) -> None:
        if self.wrap:
            self.rebuild()
        else:
            self._update_virtual_size()
            if self.following:
                self.call_after_refresh(self._scroll_to_end)

    # --- rendering --------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Drop cached renders (search or style changed)."""
        self._generation += 1
        self._cache.clear()
        self.refresh()

    def _render_line_strips(self, number: int) -> list[Strip]:
        key = (number, self._generation)
        cached = self._cache.get(key) if number != PARTIAL else None
        if cached is not None:
            return cached
        line = self._line_text(number)
        text = Text.from_ansi(line, no_wrap=True) if "\x1b" in line else Text(line, no_wrap=True)
        if "\t" in text.plain:
            text.expand_tabs(8)
        if self.search is not None:
            style = CURRENT_MATCH_STYLE if number == self.current_match else MATCH_STYLE
            for match in self.search.finditer(text.plain):
                if match.end() > match.start():
                    text.stylize(style, match.start(), match.end())
        segments = list(text.render(self.app.console))
        strip = Strip(segments, cell_len(text.plain))
        if self.wrap:
            width = self._wrap_width()
            cuts = [*range(width, strip.cell_length, width), strip.cell_length]
            strips = list(strip.divide(cuts)) if strip.cell_length > width else [strip]
        else:
            strips = [strip]
        if number != PARTIAL:
            self._cache[key] = strips
        return strips

    def render_lines(self, crop: Region) -> list[Strip]:
        # Looked up once per frame, not once per row: each walks the DOM (`rich_style` alone
        # was half the cost of drawing the pane).
        frame = (self.scroll_offset, self.scrollable_content_region.width, self.rich_style)
        self._frame = frame
        try:
            if self._plain_box():
                return self._render_rows(crop, frame)
            return super().render_lines(crop)
        finally:
            self._frame = None

    def _plain_box(self) -> bool:
        """Whether rows need nothing from Textual's styles cache but background and filters
        (no border, padding, outline, tint, hatch or opacity)."""
        styles = self.styles
        return (
            not any(styles.gutter)
            and not any(edge for edge, _ in styles.outline)
            and not styles.tint.a
            and styles.text_opacity == 1.0
            and self.opacity == 1.0
            and not (styles.has_rule("hatch") and styles.hatch != "none")
        )

    def _render_rows(self, crop: Region, frame: tuple[Offset, int, Style]) -> list[Strip]:
        """The pane's rows as Textual's styles cache would draw them, each finished row kept
        by line number: a frame after new lines draws only those, however far the view
        scrolled (Textual's own cache is per screen row, so scrolling redrew every row)."""
        (scroll_x, scroll_y), _, style = frame
        width = self.size.width
        base_background, background = self.background_colors
        inner = self._styles_cache.get_inner_outer(base_background, background)[0].rich_style
        filters = self.get_line_filters()
        look = (self._generation, scroll_x, width, style, inner, background, *map(id, filters))
        cache = self._row_cache
        strips: list[Strip] = []
        for y in crop.line_range:
            row = self.row_at(scroll_y + y)
            key = None if row is not None and row[0] == PARTIAL else (row, look)
            strip = cache.get(key) if key is not None else None
            if strip is None:
                line = self.render_line(y).adjust_cell_length(width, inner)
                for line_filter in filters:
                    line = line.apply_filter(line_filter, background)
                strip = line
                if key is not None:
                    cache[key] = strip
            strips.append(strip)
        if crop.column_span != (0, width):
            x1, x2 = crop.column_span
            strips = [strip.crop(x1, x2) for strip in strips]
        return strips

    def render_line(self, y: int) -> Strip:
        frame = self._frame
        if frame is None:
            frame = (self.scroll_offset, self.scrollable_content_region.width, self.rich_style)
        (scroll_x, scroll_y), width, style = frame
        row = self.row_at(scroll_y + y)
        if row is None:
            return Strip.blank(width, style)
        number, sub = row
        strips = self._render_line_strips(number)
        strip = strips[sub] if sub < len(strips) else Strip.blank(0)
        strip = strip.apply_style(style)
        if self.wrap:
            return strip.crop_extend(0, width, style)
        return strip.crop_extend(scroll_x, scroll_x + width, style)


class LogView(Vertical):
    """The log pane: a `LogSource` followed at the tail, with search, filter, wrap and save.

    Args:
        max_lines: Lines kept in memory (`[monitor] log_buffer_lines`).
        max_fps: Upper bound on redraws per second (`[ui] max_fps`).
        clock: Epoch-seconds clock for the freshness in the title (fixed in screenshots).
        id: Widget id.
        classes: CSS classes.
    """

    DEFAULT_CSS = """
    LogView {
        border: round $primary-darken-1;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
    }
    LogView:focus-within {
        border: round $primary;
    }
    LogView > #log-marker {
        display: none;
        height: 1;
        background: $warning-darken-2;
        color: $text;
        padding: 0 1;
    }
    LogView.-paused > #log-marker {
        display: block;
    }
    LogView > #log-prompt {
        display: none;
        height: 3;
    }
    LogView.-prompting > #log-prompt {
        display: block;
    }
    LogView > #log-prompt.-invalid {
        border: tall $error;
    }
    LogView > #log-error {
        display: none;
        height: 1;
        color: $error;
        padding: 0 1;
    }
    LogView > #log-error.-shown {
        display: block;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "follow", "Follow"),
        Binding("end", "follow", "Follow", show=False),
        Binding("slash", "search", "Search"),
        Binding("n", "search_next", "Next match", show=False),
        Binding("N", "search_previous", "Previous match", show=False),
        Binding("ampersand", "filter", "Filter"),
        Binding("w", "toggle_wrap", "Wrap"),
        Binding("ctrl+s", "save", "Save log"),
        Binding("escape", "close_prompt", "Close", show=False),
    ]

    class Saved(Message):
        """The buffer was written to a file."""

        def __init__(self, path: Path, lines: int) -> None:
            self.path = path
            self.lines = lines
            super().__init__()

    def __init__(
        self,
        *,
        max_lines: int = 10_000,
        max_fps: int = 10,
        clock: Callable[[], float] = time.time,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.buffer = LineBuffer(max_lines)
        self.max_fps = max(1, max_fps)
        self.clock = clock
        self.source: LogSource | None = None
        self.notice: str | None = None
        """The source's last notice (truncated, rotated, waiting...)."""
        self.last_update: float | None = None
        """When the last chunk arrived (clock seconds)."""
        self.search_term = ""
        self.filter_text = ""
        self._prompt_mode: str | None = None
        self._dirty = False
        self._source_on_mount: LogSource | None = None
        self._incoming: deque[str] = deque(maxlen=self.buffer.max_lines)
        self._incoming_count = 0
        self._incoming_partial: str | None = None
        self._incoming_size: int | None = None
        self._flush_timer: Timer | None = None
        """The pending frame, while lines wait for it."""
        self._flush_queued = False
        """A frame was asked for on the next message-loop turn."""
        self._last_flush = -math.inf
        """When the last frame was made (monotonic seconds)."""
        self._title_timer: Timer | None = None
        self._title_shown: tuple[str, str] | None = None
        self._size_shown: tuple[str, float] | None = None
        """The size text in the subtitle and when it was set (monotonic seconds)."""
        self.lines_view = LogLines(self.buffer, id="log-lines")

    def compose(self) -> ComposeResult:
        yield self.lines_view
        yield Static("", id="log-marker")
        yield Input(id="log-prompt")
        yield Static("", id="log-error")

    def on_mount(self) -> None:
        self._show_title("log", "no source")
        if self._source_on_mount is not None:
            self.set_source(self._source_on_mount)
            self._source_on_mount = None

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "logs" and event.state == WorkerState.ERROR:
            # The pane says what went wrong instead of going quiet; other panes carry on.
            self.notice = f"stopped following: {worker.error}"
            self._update_title()
            self.notify(f"log: {worker.error}", severity="error", timeout=6)

    # --- source ---------------------------------------------------------------------------------

    def set_source(self, source: LogSource | None) -> None:
        """Show `source` (None: nothing), cancelling the follow of the previous one.

        Args:
            source: The log to follow, or None to empty the pane.
        """
        if not self.is_mounted:
            self._source_on_mount = source
            return
        self.workers.cancel_group(self, "logs")
        if self._title_timer is not None:
            self._title_timer.stop()
            self._title_timer = None
        self.source = source
        self.buffer.clear()
        self.buffer.size = None
        self._incoming.clear()
        self._incoming_count = 0
        self._incoming_partial = None
        self._incoming_size = None
        self._dirty = False
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._last_flush = -math.inf
        self._size_shown = None
        self.notice = None
        self.last_update = None
        self.lines_view.following = True
        self.lines_view.new_while_paused = 0
        self.lines_view.current_match = None
        self.lines_view.rebuild()
        self._update_marker()
        self._update_title()
        if source is not None:
            self._follow(source)

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def _follow(self, source: LogSource) -> None:
        async for chunk in source.follow(initial_lines=self.buffer.max_lines):
            if source is not self.source:
                return
            self._take(chunk)

    def _take(self, chunk: LogChunk) -> None:
        # Lines wait here until the next frame, so the buffer the screen draws from only
        # changes in `_flush`; beyond a buffer's worth they would be dropped at once anyway.
        if chunk.lines:
            self._incoming.extend(chunk.lines)
            self._incoming_count += len(chunk.lines)
        self._incoming_partial = chunk.partial
        if chunk.size is not None:
            self._incoming_size = chunk.size
        if chunk.notice:
            self.notice = chunk.notice
        self.last_update = self.clock()
        self._dirty = True
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Ask for a frame: at once after a quiet spell, else one period after the last one."""
        # No timer ticks while nothing arrives; at most one frame is pending at any time.
        if self._flush_timer is not None or self._flush_queued:
            return
        delay = self._last_flush + 1 / self.max_fps - time.monotonic()
        if delay <= 0:
            # The next loop turn, so that chunks already read arrive in the same frame.
            self._flush_queued = True
            self.call_next(self._flush)
        else:
            self._flush_timer = self.set_timer(delay, self._flush, name="log frame")

    def _flush(self) -> None:
        """One frame: move what arrived into the view (at most `max_fps` times a second)."""
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._flush_queued = False
        if not self._dirty:
            return
        self._last_flush = time.monotonic()
        self._dirty = False
        kept = len(self._incoming)
        self.buffer.extend(self._incoming, skipped=self._incoming_count - kept)
        self.buffer.partial = self._incoming_partial
        self.buffer.size = self._incoming_size
        self._incoming.clear()
        self._incoming_count = 0
        self.lines_view.sync()
        self._update_marker()
        self._update_title()

    def flush_now(self) -> None:
        """Apply pending chunks immediately (tests, screenshots)."""
        self._dirty = True
        self._flush()

    # --- title and marker -------------------------------------------------------------------------

    def freshness(self) -> str:
        """How long ago the source last produced something, for the subtitle."""
        if self.last_update is None:
            return "no data yet"
        age = max(0.0, self.clock() - self.last_update)
        if age < 2:
            return "live"
        import humanize

        return f"updated {humanize.naturaldelta(age)} ago"

    def _update_title(self) -> None:
        if not self.is_mounted:
            return
        if self.source is None:
            self._show_title("log", "no source")
            return
        parts = [self.freshness()]
        if self.filter_text:
            parts.append(f"filter /{self.filter_text}/ {len(self.lines_view.entries)} lines")
        if self.notice:
            parts.append(self.notice)
        title = f"log: {self.source.description}"
        self._show_title(title, self._with_size(title, parts))
        self._schedule_freshness()

    def _with_size(self, title: str, parts: list[str]) -> str:
        """The subtitle: the file size, then `parts`.

        The size shown is kept while only it changed, for up to `SIZE_REFRESH_SECONDS`: a
        growing log would otherwise repaint the whole pane on every frame for its last digit.
        """
        import humanize

        size = self.buffer.size
        current = "" if size is None else humanize.naturalsize(size, binary=True)
        now = time.monotonic()
        shown = self._size_shown
        if shown is not None and shown[0] != current and now - shown[1] < SIZE_REFRESH_SECONDS:
            stale = " · ".join([shown[0], *parts] if shown[0] else parts)
            if self._title_shown == (title, stale):
                return stale
        if shown is None or shown[0] != current:
            self._size_shown = (current, now)
        return " · ".join([current, *parts] if current else parts)

    def _show_title(self, title: str, subtitle: str) -> None:
        # Setting a border title repaints the whole pane, even to the same text.
        if (title, subtitle) != self._title_shown:
            self._title_shown = (title, subtitle)
            self.border_title = title
            self.border_subtitle = subtitle

    def _schedule_freshness(self) -> None:
        """Look at the freshness again when it may next read differently (one timer at most)."""
        if self._title_timer is not None or self.source is None or self.last_update is None:
            return
        age = max(0.0, self.clock() - self.last_update)
        if age < 2:
            delay = 2 - age
        else:
            # The label's own resolution: seconds, then minutes, then hours.
            step = 1.0 if age < 60 else (15.0 if age < 3600 else 300.0)
            delay = step - age % step
        self._title_timer = self.set_timer(max(0.05, delay), self._freshness_due)

    def _freshness_due(self) -> None:
        self._title_timer = None
        self._update_title()

    def _update_marker(self) -> None:
        view = self.lines_view
        self.set_class(not view.following, "-paused")
        if not view.following:
            count = view.new_while_paused
            noun = "line" if count == 1 else "lines"
            self.query_one("#log-marker", Static).update(
                f"⏸ paused — {count} new {noun} · End/f to follow"
            )

    @on(LogLines.Paused)
    def _paused_changed(self) -> None:
        self._update_marker()

    # --- actions ----------------------------------------------------------------------------------

    def action_follow(self) -> None:
        """Resume following the tail."""
        self.lines_view.resume()
        self._update_marker()

    def action_toggle_wrap(self) -> None:
        """Wrap long lines at the pane's width, or scroll them sideways."""
        self.lines_view.wrap = not self.lines_view.wrap
        self.lines_view.rebuild()

    def action_search(self, term: str | None = None) -> None:
        """Search for `term` (literal, case-insensitive unless it has capitals); None asks for it."""
        if term is None:
            self._open_prompt("search", self.search_term, "search (Enter: find, n/N: next/prev)")
            return
        self._apply_search(term)

    def action_filter(self, pattern: str | None = None) -> None:
        """Show only lines matching the regex `pattern` ('' shows all); None asks for it."""
        if pattern is None:
            self._open_prompt("filter", self.filter_text, "filter regex (empty: show all)")
            return
        self._apply_filter(pattern)

    def action_save(self, path: str | None = None) -> None:
        """Write the buffer (plain text) to `path`; None asks for a path."""
        if path is None:
            name = Path(self.source.description).stem if self.source else "log"
            stamp = datetime.fromtimestamp(self.clock()).strftime("%Y%m%d-%H%M%S")
            default = str(Path.cwd() / f"{name or 'log'}-{stamp}.txt")
            self._open_prompt("save", default, "save the buffer to")
            return
        self._save(Path(path).expanduser())

    def action_search_next(self) -> None:
        """Move to the next (newer) match."""
        self._move_match(+1)

    def action_search_previous(self) -> None:
        """Move to the previous (older) match."""
        self._move_match(-1)

    def action_close_prompt(self) -> None:
        """Hide the prompt; the search or filter stays applied."""
        self._prompt_mode = None
        self.remove_class("-prompting")
        self._show_error(None)
        self.lines_view.focus()

    # --- search -----------------------------------------------------------------------------------

    def _apply_search(self, term: str) -> None:
        view = self.lines_view
        self.search_term = term
        view.search = _smart_case_pattern(term) if term else None
        view.current_match = None
        view.invalidate()
        if view.search is None:
            return
        # Start from the newest match at or above the bottom of the view.
        bottom = view.row_at(round(view.scroll_y) + view.scrollable_content_region.height - 1)
        limit = bottom[0] if bottom is not None and bottom[0] != PARTIAL else None
        candidates = self._matching_lines()
        before = [n for n in candidates if limit is None or n <= limit]
        target = before[-1] if before else (candidates[0] if candidates else None)
        if target is None:
            self.notify(f"no match for {term!r}", severity="warning", timeout=3)
            return
        view.current_match = target
        view.invalidate()
        view.scroll_to_line(target)

    def _matching_lines(self) -> list[int]:
        view = self.lines_view
        if view.search is None:
            return []
        search = view.search.search
        return [n for n in view.entries if search(_plain(self.buffer.line(n)))]

    def _move_match(self, step: int) -> None:
        view = self.lines_view
        if view.search is None:
            return
        matches = self._matching_lines()
        if not matches:
            return
        current = view.current_match
        if current is None:
            target = matches[-1]
        elif step > 0:
            target = next((n for n in matches if n > current), matches[0])
        else:
            target = next((n for n in reversed(matches) if n < current), matches[-1])
        view.current_match = target
        view.invalidate()
        view.scroll_to_line(target)

    # --- filter -----------------------------------------------------------------------------------

    def _apply_filter(self, pattern: str) -> bool:
        try:
            compiled = re.compile(pattern) if pattern else None
        except re.error as exc:
            self._show_error(f"invalid regex: {exc}")
            return False
        self._show_error(None)
        self.filter_text = pattern
        self.lines_view.filter = compiled
        self.lines_view.rebuild()
        self._update_title()
        return True

    def _show_error(self, message: str | None) -> None:
        error = self.query_one("#log-error", Static)
        error.update(message or "")
        error.set_class(message is not None, "-shown")
        self.query_one("#log-prompt", Input).set_class(message is not None, "-invalid")

    # --- save ---------------------------------------------------------------------------------------

    @work(group="log-save", exit_on_error=False)
    async def _save(self, path: Path) -> None:
        lines = [strip_ansi(line) for line in self.buffer.text_lines()]
        text = "".join(f"{line}\n" for line in lines)
        try:
            await asyncio.to_thread(path.write_text, text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"could not save the log to {path}: {exc.strerror}", severity="error")
            return
        self.notify(f"saved {len(lines)} lines to {path}", timeout=4)
        self.post_message(self.Saved(path, len(lines)))

    # --- prompt -------------------------------------------------------------------------------------

    def _open_prompt(self, mode: str, value: str, placeholder: str) -> None:
        self._prompt_mode = mode
        prompt = self.query_one("#log-prompt", Input)
        prompt.placeholder = placeholder
        prompt.value = value
        self._show_error(None)
        self.add_class("-prompting")
        prompt.focus()

    @on(Input.Changed, "#log-prompt")
    def _prompt_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._prompt_mode == "filter":
            self._apply_filter(event.value)

    @on(Input.Submitted, "#log-prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        mode = self._prompt_mode
        if mode == "filter" and not self._apply_filter(event.value):
            return
        if mode == "search":
            self._apply_search(event.value)
        elif mode == "save" and event.value.strip():
            self._save(Path(event.value.strip()).expanduser())
        self.action_close_prompt()


__all__ = ["LogLines", "LogView"]
