"""The incremental tracker, the detectors and TensorBoard's smoothing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from runctl_tui.cli import main
from runctl_tui.core.metrics.detectors import check_divergence, check_nonfinite, check_stall
from runctl_tui.core.metrics.models import Series
from runctl_tui.core.metrics.smoothing import EmaSmoother, debiased_ema
from runctl_tui.core.metrics.tracker import MetricsTracker
from tests.helpers import Clock

SAMPLES = Path(__file__).parent.parent / "data" / "metrics"


def test_tracker_reads_only_what_was_appended(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 1 loss=0.9\nstep 2 loss=0.8\n")
    clock = Clock(1000.0)
    tracker = MetricsTracker(log, clock=clock)
    assert tracker.poll()
    assert tracker.series["loss"].points() == [(1.0, 0.9), (2.0, 0.8)]
    reader = next(iter(tracker._readers.values()))
    assert reader.offset == log.stat().st_size
    assert not tracker.poll()
    with log.open("a") as fh:
        fh.write("step 3 loss=0.7\nstep 4 lo")  # the last line is still being written
    assert tracker.poll()
    assert tracker.series["loss"].points()[-1] == (3.0, 0.7)
    with log.open("a") as fh:
        fh.write("ss=0.6\n")
    assert tracker.poll()
    assert tracker.series["loss"].points() == [(1.0, 0.9), (2.0, 0.8), (3.0, 0.7), (4.0, 0.6)]


def test_progress_bar_values_arrive_before_the_line_ends(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    raw = (SAMPLES / "tqdm" / "postfix.raw").read_bytes()
    first_cr_half = raw.index(b"\r", len(raw) // 4)
    log.write_bytes(raw[:first_cr_half])
    tracker = MetricsTracker(log)
    assert tracker.poll()
    early = len(tracker.series["loss"])
    assert 0 < early < 40  # one epoch is one line; its values show up while it is drawn
    log.write_bytes(raw)
    assert tracker.poll()
    assert len(tracker.series["loss"]) == 40


def test_truncated_log_is_read_again(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 1 loss=0.9\nstep 2 loss=0.8\n")
    tracker = MetricsTracker(log)
    tracker.poll()
    log.write_text("step 1 loss=5.0\n")
    assert tracker.poll()
    assert tracker.series["loss"].points() == [(1.0, 5.0)]


def test_new_sources_in_a_run_directory_are_picked_up(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    tracker = MetricsTracker(tmp_path, rescan_seconds=5, clock=clock)
    assert not tracker.poll()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "val_loss": 1.5}\n')
    clock.now += 6
    assert tracker.poll()
    assert tracker.series["val_loss"].points() == [(1.0, 1.5)]
    assert tracker.sources == [tmp_path / "metrics.jsonl"]


def test_stall_detected_after_no_new_step(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 1 loss=0.9\n")
    clock = Clock(1000.0)
    tracker = MetricsTracker(log, clock=clock)
    tracker.poll()
    assert tracker.alerts(divergence_factor=3, stall_seconds=600) == []
    clock.now += 601
    tracker.poll()
    (alert,) = tracker.alerts(divergence_factor=3, stall_seconds=600)
    assert alert.kind == "stall" and "10 min" in alert.message
    assert tracker.alerts(divergence_factor=3, stall_seconds=600, running=False) == []
    with log.open("a") as fh:
        fh.write("step 2 loss=0.8\n")
    tracker.poll()
    assert tracker.alerts(divergence_factor=3, stall_seconds=600) == []


def test_divergence_and_nonfinite_detectors() -> None:
    # The full rule is tested on real runs in test_metrics_divergence.py.
    loss = Series("loss", [(step, 1.0 / step) for step in range(1, 21)])
    assert check_divergence(loss, 3.0) is None
    for step in range(21, 27):
        loss.append(step, 2.0)
    alert = check_divergence(loss, 3.0)
    assert alert is not None and alert.kind == "divergence" and "step 26" in alert.message
    assert check_divergence(Series("accuracy", [(1, 0.1), (2, 0.1), (3, 0.9)]), 3.0) is None
    assert check_divergence(Series("elbo_loss", [(1, -1), (2, -2), (3, 10)]), 3.0) is None
    assert check_nonfinite(loss) is None
    loss.append(6, math.nan)
    alert = check_nonfinite(loss)
    assert alert is not None and "NaN at step 6" in alert.message
    assert check_nonfinite(Series("grad_norm", [(1, math.inf)])) is not None


def test_tracker_raises_nan_alert_from_a_log(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 1 loss=0.9\nstep 2 loss=nan\n")
    tracker = MetricsTracker(log)
    tracker.poll()
    kinds = [a.kind for a in tracker.alerts(divergence_factor=3, stall_seconds=0)]
    assert kinds == ["nonfinite"]
    assert check_stall(0.0, 1e9, 0) is None  # 0 disables the stall check


def test_debiased_ema_is_tensorboards_formula() -> None:
    # Worked by hand from TensorBoard's classicSmoothing, weight 0.6:
    # last=0.4*1=0.4 -> 0.4/(1-0.6)=1.0; last=0.24+0.4*3=1.44 -> 1.44/(1-0.36)=2.25;
    # NaN passes through and does not count; last=0.864+0.4*2=1.664 -> /(1-0.216)=2.12244...
    got = debiased_ema([1.0, 3.0, math.nan, 2.0], 0.6)
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(2.25)
    assert math.isnan(got[2])
    assert got[3] == pytest.approx(1.664 / 0.784)
    assert debiased_ema([5.0, 5.0, 5.0], 0.9) == [5.0, 5.0, 5.0]  # constant: unchanged
    assert debiased_ema([1.0, 2.0], 0.0) == [1.0, 2.0]
    assert debiased_ema([1.0, 2.0], 1.0) == [0.0, 0.0]  # w=1: no debias, stays at 0
    assert debiased_ema([1.0, 2.0], math.nan) == [1.0, 2.0]
    assert debiased_ema([], 0.5) == []


def test_cli_json_is_exactly_series_of_step_value_pairs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log = tmp_path / "train.log"
    log.write_text("step 1 loss=0.9\nloss=0.8\n{'eval_loss': '1.5'}\n")
    assert main(["metrics", str(log), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # The second loss line gives no step: it is counted (2nd point); the dict gives none: null.
    assert data == {"series": {"loss": [[1, 0.9], [2, 0.8]], "eval_loss": [[None, 1.5]]}}
    assert all(isinstance(v, float) for _, v in data["series"]["loss"])


def test_cli_table_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", str(SAMPLES / "keras" / "training.csv")]) == 0
    out = capsys.readouterr().out
    assert "val_loss" in out and "0.3755" in out and "█" in out
    assert main(["metrics", str(SAMPLES / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_event_file_in_a_subprocess() -> None:
    (event,) = (SAMPLES / "tensorboard").glob("events.out.tfevents.*")
    result = subprocess.run(
        [sys.executable, "-m", "runctl_tui.cli", "metrics", str(event), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0 and "No module named runctl_tui.cli.__main__" in result.stderr:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from runctl_tui.cli import main; "
                f"sys.exit(main(['metrics', {str(event)!r}, '--json']))",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    series = json.loads(result.stdout)["series"]
    assert list(series) == ["train/loss", "train/lr", "val/loss"]
    assert series["val/loss"][0][0] == 9


def test_incremental_smoother_matches_the_whole_series_formula() -> None:
    values = [3.0, 3.0, 2.5, math.nan, 2.0, 2.2, 1.9, math.inf, 1.5] * 5
    for weight in (0.0, 0.3, 0.6, 0.95, 1.0):
        smoother = EmaSmoother(weight)
        for start in range(0, len(values), 4):
            smoother.extend(values[start : start + 4])
        expected = debiased_ema(values, weight)
        for got, want in zip(smoother.smoothed, expected, strict=True):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12)
    flat = EmaSmoother(0.9)
    flat.extend([2.0, 2.0])
    assert flat.smoothed == [2.0, 2.0]


def test_datasets_beside_a_run_are_not_taken_for_metrics(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\nhello,1\nworld,0\n")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 1}\n')
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    (tmp_path / "history.csv").write_text("epoch,loss\n0,0.7\n")
    tracker = MetricsTracker(tmp_path)
    tracker.poll()
    assert sorted(p.name for p in tracker.sources) == ["history.csv", "metrics.jsonl"]
    assert set(tracker.series) == {"loss"}


def test_a_newer_checkpoints_trainer_state_takes_over(tmp_path: Path) -> None:
    state = json.loads((SAMPLES / "hf_console" / "trainer_state.json").read_text())
    early = dict(
        state, global_step=6, log_history=[e for e in state["log_history"] if e["step"] <= 6]
    )
    (tmp_path / "checkpoint-6").mkdir()
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text(json.dumps(early))
    clock = Clock(1000.0)
    tracker = MetricsTracker(tmp_path, clock=clock)
    tracker.poll()
    assert [s for s, _ in tracker.series["loss"].points()] == [2.0, 4.0, 6.0]
    (tmp_path / "checkpoint-12").mkdir()
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text(json.dumps(state))
    clock.now += 10
    assert tracker.poll()
    assert [s for s, _ in tracker.series["loss"].points()] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert tracker.sources == [tmp_path / "checkpoint-12" / "trainer_state.json"]
    assert tracker.info["best_metric"] == state["best_metric"]
