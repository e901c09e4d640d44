"""The checkpoint browser in a real Textual app: live listing, best, writing, unreadable, cleanup."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Static

from runctl_tui.core.config import CheckpointsConfig
from runctl_tui.ui.screens.cleanup_confirm import CleanupConfirmScreen
from runctl_tui.ui.widgets.checkpoint_browser import CheckpointBrowser

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "checkpoints"
NOW = 1_800_000_000.0
"""The pinned clock of every test: ages and times on screen never depend on the real one."""


class BrowserApp(App[None]):
    def __init__(self, directory: Path | None, settings: CheckpointsConfig | None = None) -> None:
        super().__init__()
        self.directory = directory
        self.settings = settings or CheckpointsConfig(keep_last=1)
        self.messages: list[Message] = []

    def compose(self) -> ComposeResult:
        yield CheckpointBrowser(self.settings, clock=lambda: NOW, id="browser")

    def on_mount(self) -> None:
        self.query_one(CheckpointBrowser).set_directory(self.directory)

    def on_checkpoint_browser_resume_requested(
        self, message: CheckpointBrowser.ResumeRequested
    ) -> None:
        self.messages.append(message)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _stamp(path: Path, minutes_ago: float) -> None:
    stamp = NOW - 60 * minutes_ago
    for target in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(target, (stamp, stamp), follow_symlinks=False)


@pytest.fixture
def ckpts(isolated_home: Path) -> Path:
    """A run folder under ~ with Lightning checkpoints, a torch file and its alias, and a cut file."""
    root = isolated_home / "ckpts"
    root.mkdir()
    for minutes, name in (
        (30, "epoch=2-step=12.ckpt"),
        (20, "epoch=3-step=16.ckpt"),
        (10, "last.ckpt"),
    ):
        shutil.copy(SAMPLES / "lightning" / name, root / name)
        _stamp(root / name, minutes)
    shutil.copy(SAMPLES / "torch/training_zip.pth", root / "export.pth")
    _stamp(root / "export.pth", 90)
    (root / "release.pt").symlink_to("export.pth")
    shutil.copy(SAMPLES / "safetensors/model.safetensors", root / "weights.safetensors")
    _stamp(root / "weights.safetensors", 120)
    data = (SAMPLES / "torch/state_dict_zip.pt").read_bytes()
    (root / "crashed.pt").write_bytes(data[: len(data) // 2])
    _stamp(root / "crashed.pt", 5)
    return root


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until `condition` holds (workers are real; the deadline is generous)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await pilot.pause(0.02)


def browser_of(pilot: Pilot[Any]) -> CheckpointBrowser:
    return pilot.app.query_one(CheckpointBrowser)


def row_text(browser: CheckpointBrowser, key: str) -> list[str]:
    return [str(cell) for cell in browser.table.get_row(key)]


def details_text(browser: CheckpointBrowser) -> str:
    return str(browser.query_one("#ckpt-details", Static).render())


async def test_lists_marks_best_alias_and_unreadable(ckpts: Path) -> None:
    app = BrowserApp(ckpts)
    async with app.run_test(size=(130, 30)) as pilot:
        browser = browser_of(pilot)
        await until(pilot, lambda: browser.scans >= 1)
        names = [e.name for e in browser.entries]
        assert names == [
            "crashed.pt",
            "last.ckpt",
            "epoch=3-step=16.ckpt",
            "epoch=2-step=12.ckpt",
            "export.pth",
            "weights.safetensors",
        ]
        best = row_text(browser, str(ckpts / "epoch=3-step=16.ckpt"))
        assert best[0] == "★"
        assert "val_loss=0.1456" in best
        assert row_text(browser, str(ckpts / "crashed.pt"))[-1] == "unreadable"
        assert "← release.pt" in row_text(browser, str(ckpts / "export.pth"))[1]
        assert row_text(browser, str(ckpts / "last.ckpt"))[4] == "10 minutes ago"
        # The newest row is selected: its details say why it is unreadable.
        await until(pilot, lambda: "unreadable:" in details_text(browser))
        assert "truncated: zip central directory missing" in details_text(browser)
        await pilot.press("down", "down")
        await until(pilot, lambda: "58 parameters" in details_text(browser))
        assert "best: Lightning ModelCheckpoint best_model_path" in details_text(browser)


async def test_new_checkpoint_appears_and_growing_one_is_marked_writing(ckpts: Path) -> None:
    app = BrowserApp(ckpts)
    async with app.run_test(size=(130, 30)) as pilot:
        browser = browser_of(pilot)
        await until(pilot, lambda: browser.scans >= 1)
        new = ckpts / "epoch=4-step=20.ckpt"
        with open(new, "wb") as handle:
            handle.write(b"PK\x03\x04" + b"\0" * 1000)
            handle.flush()
            await until(pilot, lambda: any(e.path == str(new) for e in browser.entries))

            def still_writing() -> bool:
                # Keep the file growing until the pane has seen it grow (no timing race).
                handle.write(b"\0" * 100)
                handle.flush()
                return row_text(browser, str(new))[-1] == "writing…"

            await until(pilot, still_writing)
        # Finished: the next look sees the same size and drops the mark by itself.
        await until(pilot, lambda: row_text(browser, str(new))[-1] != "writing…")


async def test_cleanup_shows_the_plan_and_deletes_on_confirm(ckpts: Path) -> None:
    app = BrowserApp(ckpts, CheckpointsConfig(keep_last=2, protected=["weights.*"]))
    async with app.run_test(size=(130, 40)) as pilot:
        browser = browser_of(pilot)
        await until(pilot, lambda: browser.scans >= 1)
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, CleanupConfirmScreen))
        screen = app.screen
        assert isinstance(screen, CleanupConfirmScreen)
        # The cut file is newest but unreadable: it takes no "newest 2" place from last.ckpt.
        assert [e.name for e in screen.plan.delete] == ["crashed.pt", "epoch=2-step=12.ckpt"]
        items = str(screen.query_one("#cleanup-items", Static).render())
        assert "delete  epoch=2-step=12.ckpt" in items
        assert "weights.safetensors  protected by 'weights.*'" in items
        assert "export.pth  has alias release.pt" in items
        await pilot.press("escape")  # cancel first: nothing goes
        await until(pilot, lambda: not isinstance(app.screen, CleanupConfirmScreen))
        assert (ckpts / "epoch=2-step=12.ckpt").exists()
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, CleanupConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: not (ckpts / "epoch=2-step=12.ckpt").exists())
        await until(pilot, lambda: all(e.name != "epoch=2-step=12.ckpt" for e in browser.entries))
        assert not (ckpts / "crashed.pt").exists()
        assert (ckpts / "epoch=3-step=16.ckpt").exists()  # the best stays
        assert (ckpts / "last.ckpt").exists()


async def test_resume_asks_the_dashboard(ckpts: Path) -> None:
    app = BrowserApp(ckpts)
    async with app.run_test(size=(130, 30)) as pilot:
        browser = browser_of(pilot)
        await until(pilot, lambda: browser.scans >= 1)
        await pilot.press("down")  # last.ckpt
        await pilot.press("R")
        await until(pilot, lambda: bool(app.messages))
        message = app.messages[0]
        assert isinstance(message, CheckpointBrowser.ResumeRequested)
        assert message.entry.name == "last.ckpt"


async def test_switching_directories_stops_the_old_watch(ckpts: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(SAMPLES / "torch/state_dict_zip.pt", other / "only.pt")
    app = BrowserApp(ckpts)
    async with app.run_test(size=(130, 30)) as pilot:
        browser = browser_of(pilot)
        await until(pilot, lambda: browser.scans >= 1)
        browser.set_directory(other)
        await until(pilot, lambda: [e.name for e in browser.entries] == ["only.pt"])
        watchers = [w for w in app.workers if w.group == "checkpoints-watch" and w.is_running]
        assert len(watchers) == 1
        browser.set_directory(None)
        await until(
            pilot,
            lambda: not [w for w in app.workers if w.group == "checkpoints-watch" and w.is_running],
        )
        assert browser.table.row_count == 0
        assert str(browser.query_one("#ckpt-title", Static).render()) == "no checkpoint directory"


def test_snapshot(snap_compare: Any, ckpts: Path) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        browser = browser_of(pilot)
        await until(pilot, lambda: browser.scans >= 1)
        await pilot.press("down", "down")
        await until(pilot, lambda: "58 parameters" in details_text(browser))

    assert snap_compare(BrowserApp(ckpts), terminal_size=(130, 24), run_before=ready)


async def test_remote_directory_is_polled_and_growth_marked() -> None:
    from runctl_tui.core.checkpoints import FileFact, classify_remote

    sizes = {"epoch=0-step=10.ckpt": 100, "epoch=1-step=20.ckpt": 100}
    calls = 0
    growing: list[str] = []

    async def lister() -> list[Any]:
        nonlocal calls
        calls += 1
        for name in growing:  # a run still writing: bigger at every look
            sizes[name] += 10
        files = [
            FileFact(f"/workspace/ckpt/{n}", s, NOW - 60, False, None) for n, s in sizes.items()
        ]
        return classify_remote(files, "/workspace/ckpt")

    app = BrowserApp(None)
    async with app.run_test(size=(130, 30)) as pilot:
        browser = browser_of(pilot)
        browser.set_remote(lister, "pod abc123:/workspace/ckpt", poll_seconds=0.05)
        await until(pilot, lambda: len(browser.entries) == 2)
        assert "pod abc123:/workspace/ckpt" in str(
            browser.query_one("#ckpt-title", Static).render()
        )
        sizes["epoch=2-step=30.ckpt"] = 10
        await until(pilot, lambda: len(browser.entries) == 3)
        growing.append("epoch=2-step=30.ckpt")
        key = "/workspace/ckpt/epoch=2-step=30.ckpt"
        await until(pilot, lambda: row_text(browser, key)[-1] == "writing…")
        growing.clear()  # the write finished: the next look drops the mark
        await until(pilot, lambda: row_text(browser, key)[-1] != "writing…")
        # Remote rows are not read (no download): the details say where the checkpoint lives.
        assert "· on ssh · /workspace/ckpt/" in details_text(browser)
        browser.set_remote(None)
        stopped_at = calls
        await until(
            pilot,
            lambda: not [w for w in app.workers if w.group == "checkpoints-watch" and w.is_running],
        )
        await pilot.pause(0.2)
        assert calls == stopped_at


async def test_a_folder_that_appears_later_is_picked_up(isolated_home: Path) -> None:
    folder = isolated_home / "later" / "checkpoints"
    app = BrowserApp(folder)
    async with app.run_test(size=(130, 30)) as pilot:
        browser = browser_of(pilot)
        title = browser.query_one("#ckpt-title", Static)
        await until(pilot, lambda: "waiting for checkpoints/ to appear" in str(title.render()))
        folder.mkdir(parents=True)
        shutil.copy(SAMPLES / "torch/state_dict_zip.pt", folder / "epoch_1.pt")
        await until(pilot, lambda: [e.name for e in browser.entries] == ["epoch_1.pt"])
        shutil.rmtree(folder)
        await until(pilot, lambda: browser.entries == [] and browser.table.row_count == 0)
