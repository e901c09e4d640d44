"""The line parser against real console output, checked with each library's own values."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from runctl_tui.core.metrics import lines as lines_module
from runctl_tui.core.metrics.lines import LineMetricsParser, parse_lines
from runctl_tui.core.metrics.models import MetricPoint

SAMPLES = Path(__file__).parent.parent / "data" / "metrics"


@pytest.fixture(autouse=True, params=["c", "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs twice: with the C loops (`_speedups`) and in pure Python."""
    if request.param == "python":
        monkeypatch.setattr(lines_module, "_speedups", None)
    elif lines_module._speedups is None:
        pytest.fail("the C extension runctl_tui.core.metrics._speedups is not built")
    return str(request.param)


def series_of(points: list[MetricPoint]) -> dict[str, list[tuple[float | None, float]]]:
    out: dict[str, list[tuple[float | None, float]]] = {}
    for point in points:
        out.setdefault(point.name, []).append((point.step, point.value))
    return out


def parse_raw(path: Path) -> dict[str, list[tuple[float | None, float]]]:
    """Parse a captured terminal stream the way the tracker does: split at newlines only."""
    return series_of(parse_lines(path.read_bytes().decode("utf-8").split("\n")))


def truth(folder: str) -> Any:
    return json.loads((SAMPLES / folder / "ground_truth.json").read_text())


def shown(value: float, digits: int) -> float:
    """Tolerance of a value a bar displays with `digits` significant digits."""
    return 0.5 * 10 ** (math.floor(math.log10(abs(value))) - digits + 1) + 1e-12


def test_tqdm_postfix_values_each_counted_once_with_the_bars_count() -> None:
    parsed = parse_raw(SAMPLES / "tqdm" / "postfix.raw")
    expected = truth("tqdm")["postfix"]
    loss = [(n, v) for n, v, _ in expected[:40]]
    acc = [(n, v) for n, v, _ in expected[40:]]
    assert [s for s, _ in parsed["loss"]] == [n for n, _ in loss]
    assert len(parsed["loss"]) == 40  # 40 set_postfix calls; the redraws add nothing
    for (_, got), (_, want) in zip(parsed["loss"], loss, strict=True):
        assert abs(got - want) <= shown(want, 3)  # tqdm shows 3 significant digits
    assert parsed["acc"] == [(float(n), pytest.approx(v)) for n, v in acc]
    assert set(parsed) == {"loss", "acc"}


def test_lightning_tqdm_bar_matches_callback_metrics() -> None:
    parsed = parse_raw(SAMPLES / "lightning_tqdm" / "console.raw")
    expected = truth("lightning_tqdm")
    assert set(parsed) == {"train_loss", "val_loss"}  # v_num and prose are not metrics
    for name in ("train_loss", "val_loss"):
        assert [s for s, _ in parsed[name]] == [float(s) for s, _ in expected[name]]
        for (_, got), (_, want) in zip(parsed[name], expected[name], strict=True):
            assert abs(got - want) <= shown(want, 3)


def test_lightning_rich_bar_and_its_wrapped_second_line() -> None:
    parsed = parse_raw(SAMPLES / "lightning_rich" / "console.raw")
    expected = truth("lightning_rich")
    assert set(parsed) == {"train_loss", "val_loss"}
    by_step = dict(expected["train_loss"])
    for step, value in parsed["train_loss"]:
        assert step is not None
        assert abs(value - by_step[int(step)]) <= 5e-4  # rich shows 3 decimals
    # Every epoch's last step is drawn; intermediate redraws depend on the refresh rate.
    assert {5.0, 10.0, 15.0} <= {s for s, _ in parsed["train_loss"]}
    assert [s for s, _ in parsed["val_loss"]] == [float(s) for s, _ in expected["val_loss"]]
    for (_, got), (_, want) in zip(parsed["val_loss"], expected["val_loss"], strict=True):
        assert abs(got - want) <= 5e-4


def test_keras_progress_bar_matches_history_and_batch_logs() -> None:
    parsed = parse_raw(SAMPLES / "keras" / "console.raw")
    expected = truth("keras")
    batches = {(e - 1) * 8 + b: loss for e, b, loss in expected["batches"]}
    for step, value in parsed["loss"]:
        assert step is not None
        assert abs(value - batches[int(step)]) <= 5e-5  # Keras shows 4 decimals
    ends = dict(parsed["loss"])
    assert [ends[8.0], ends[16.0], ends[24.0]] == pytest.approx(
        expected["history"]["loss"], abs=5e-5
    )
    assert [s for s, _ in parsed["val_loss"]] == [8.0, 16.0, 24.0]
    assert [v for _, v in parsed["val_loss"]] == pytest.approx(
        expected["history"]["val_loss"], abs=5e-5
    )


def test_transformers5_string_valued_console_dicts_match_log_history() -> None:
    parsed = parse_raw(SAMPLES / "hf_console" / "console.raw")
    history = truth("hf_console")["log_history"]
    for name in ("loss", "grad_norm", "learning_rate", "eval_loss", "train_loss"):
        want = [entry[name] for entry in history if name in entry]
        got = parsed[name]
        assert len(got) == len(want), name
        assert all(step is None for step, _ in got)  # the dicts carry no step
        for (_, value), expected in zip(got, want, strict=True):
            assert abs(value - expected) <= shown(expected, 4), name


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("step 10 | loss=0.53 lr=3e-4", [("loss", 10, 0.53), ("lr", 10, 3e-4)]),
        ("iter 120: loss 2.3456, time 12.3ms", [("loss", 120, 2.3456), ("time", 120, 12.3)]),
        ("global_step: 7 loss: 0.5312", [("loss", 7, 0.5312)]),
        (
            "Epoch 3/10 train_loss=0.25 val_loss=0.31",
            [("train_loss", 3, 0.25), ("val_loss", 3, 0.31)],
        ),
        ("it 40 loss 1.5", [("loss", 40, 1.5)]),
        (
            "step 100: train loss 2.5012, val loss 2.6034",
            [("train_loss", 100, 2.5012), ("val_loss", 100, 2.6034)],
        ),
        ("step=5 loss=tensor(0.7311, grad_fn=<NllLossBackward0>)", [("loss", 5, 0.7311)]),
        ("step 9 loss=nan grad_norm=inf", [("loss", 9, math.nan), ("grad_norm", 9, math.inf)]),
        (
            '{"step": 4, "loss": 0.5, "val": {"acc": 0.9}, "time": 1700000000.5, "tag": "x"}',
            [("loss", 4, 0.5), ("val/acc", 4, 0.9)],
        ),
        (
            "{'loss': 4.684, 'grad_norm': 1.25, 'learning_rate': 5e-05, 'epoch': 0.17}",
            [
                ("loss", None, 4.684),
                ("grad_norm", None, 1.25),
                ("learning_rate", None, 5e-05),
                ("epoch", None, 0.17),
            ],
        ),
    ],
)
def test_plain_line_forms(line: str, expected: list[tuple[str, float | None, float]]) -> None:
    points = LineMetricsParser().feed([line])
    got = [(p.name, p.step, p.value) for p in points]
    assert len(got) == len(expected)
    for (name, step, value), (want_name, want_step, want_value) in zip(got, expected, strict=True):
        assert (name, step) == (want_name, want_step)
        if math.isnan(want_value):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(want_value)


@pytest.mark.parametrize(
    "line",
    [
        "2024-05-01 12:00:03,123 INFO data.loader: prefetching shard 12 of 100 from /data/train",
        "GPU available: False, used: False",
        "TPU available: False, using: 0 TPU cores",
        "`Trainer.fit` stopped: `max_epochs=3` reached.",
        "Saving model checkpoint to out/checkpoint-500",
        "Downloading shards: 100%",
    ],
)
def test_prose_is_not_taken_for_metrics(line: str) -> None:
    assert LineMetricsParser().feed([line]) == []


def test_lines_without_a_step_are_counted_per_series() -> None:
    points = LineMetricsParser().feed(["loss=0.9", "noise", "loss=0.8 acc=0.5", "loss=0.7"])
    assert series_of(points) == {
        "loss": [(1.0, 0.9), (2.0, 0.8), (3.0, 0.7)],
        "acc": [(1.0, 0.5)],
    }
    assert [p.name for p in points] == ["loss", "loss", "loss", "acc"]  # grouped by series


def test_same_step_spelled_twice_is_one_point() -> None:
    points = LineMetricsParser().feed(["step 5 loss=0.5", "Step: 5, loss: 0.5", "step 6 loss 0.5"])
    assert [(p.step, p.value) for p in points] == [(5.0, 0.5), (6.0, 0.5)]


def test_extra_regex_from_config() -> None:
    parser = LineMetricsParser(
        [r"#(?P<step>\d+) (?P<name>[a-z]+)~(?P<value>[\d.]+)", r"PPL\[(?P<ppl>[\d.]+)\]"]
    )
    points = parser.feed(["#12 loss~0.25 PPL[3.5]"])
    assert ("loss", 12.0, 0.25) in [(p.name, p.step, p.value) for p in points]
    assert ("ppl", 1.0, 3.5) in [(p.name, p.step, p.value) for p in points]


def test_feeding_in_pieces_gives_the_same_points_as_at_once() -> None:
    """The tracker feeds whatever ends at a line end or redraw; the result must not change."""
    raw = (SAMPLES / "lightning_tqdm" / "console.raw").read_bytes().decode()
    whole = LineMetricsParser().feed(raw.split("\n"))
    parser = LineMetricsParser()
    pieces: list[MetricPoint] = []
    start = 0
    for index, char in enumerate(raw):
        if char in "\r\n" and index % 3 == 0:
            pieces.extend(parser.feed(raw[start : index + 1].split("\n")))
            start = index + 1
    pieces.extend(parser.feed(raw[start:].split("\n")))
    assert series_of(pieces) == series_of(whole)


def test_line_shapes_never_mix_up_keys_that_differ_in_digits() -> None:
    """Shapes are keyed without digits; keys with digits are checked on every line."""
    parser = LineMetricsParser()
    points = parser.feed(
        ["step 1 top1_acc=0.5", "step 2 top5_acc=0.7", "step 3 top1_acc=0.6", "step 10 loss=2"]
    )
    assert series_of(points) == {
        "top1_acc": [(1.0, 0.5), (3.0, 0.6)],
        "top5_acc": [(2.0, 0.7)],
        "loss": [(10.0, 2.0)],
    }
    assert list(series_of(points)) == ["top1_acc", "top5_acc", "loss"]  # as they appeared


def test_a_shape_seen_as_prose_and_a_value_of_another_width() -> None:
    parser = LineMetricsParser()
    lines = [
        "12:00:01 started worker 3",
        "12:00:02 started worker 4",
        "Epoch 3/10 loss 0.5",
        "Epoch 3/100 loss 0.25",
        "Epoch 12/100 loss 1e-3",
    ]
    points = parser.feed(lines)
    assert [(p.name, p.step, p.value) for p in points] == [
        ("loss", 3.0, 0.5),
        ("loss", 3.0, 0.25),
        ("loss", 12.0, 0.001),
    ]


def _console_lines() -> list[str]:
    """Every console capture of tests/data, as the tracker splits them."""
    data = SAMPLES.parent
    lines: list[str] = []
    for path in sorted([*data.glob("metrics/*/*.raw"), *data.glob("logs/*.log")]):
        lines.extend(path.read_bytes().decode("utf-8", "replace").split("\n"))
    return lines


def _printed_lines(count: int, seed: int) -> list[str]:
    """Lines as training scripts print them, several shapes interleaved with prose."""
    import random

    rng = random.Random(seed)
    out: list[str] = []
    step = 0
    for index in range(count):
        loss = 2.5 * 0.999**index + rng.random() * 0.05
        kind = rng.randrange(6)
        if kind == 0:
            # A new shape each time (hex ids): the parser's table of shapes fills and is
            # started over mid-batch.
            out.append(f"INFO worker {rng.getrandbits(48):x} prefetching shard {index % 128}")
        elif kind == 1:
            step += 1
            out.append(f"iter {step}: loss {loss:.4f}, time {rng.random() * 200:.2f}ms")
        elif kind == 2:
            step += 1
            out.append(f"step {step} | loss={loss:.4f} lr=3.0e-04 top5_acc={rng.random():.3f}")
        elif kind == 3:
            out.append(
                f"{{'loss': '{loss:.4g}', 'learning_rate': '4.5e-05', 'epoch': '{index / count:.3g}'}}"
            )
        elif kind == 4:
            out.append(f'{{"step": {step}, "loss": {loss:.5f}, "lr": 0.0003}}')
        else:
            out.append(f"Epoch {index // 500} loss={loss:.3f}")
    return out


def _mangled(lines: list[str], seed: int) -> list[str]:
    """The capture's metric lines with digits and dots shuffled about, as a damaged or
    unusual log might hold them, mixed with the untouched lines."""
    import random

    rng = random.Random(seed)
    out: list[str] = []
    for line in lines:
        out.append(line)
        if any(char.isdigit() for char in line) and rng.random() < 0.3:
            out.append(
                "".join(
                    rng.choice("0123456789..") if char.isdigit() and rng.random() < 0.2 else char
                    for char in line
                )
            )
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lines_read_in_batches_as_they_would_be_one_at_a_time(seed: int) -> None:
    """Lines of one shape are read a column at a time after the rest of their batch; the
    result must be what reading them one call at a time gives, damaged lines included."""
    lines = _mangled(_console_lines() + _printed_lines(30000, seed), seed)
    assert len(lines) > 6000 and sum(line.count("\r") for line in lines) > 400
    batched = series_of(LineMetricsParser().feed(lines))
    parser = LineMetricsParser()
    single: list[MetricPoint] = []
    for line in lines:
        single.extend(parser.feed([line]))
    assert batched.keys() == series_of(single).keys()
    for name, points in series_of(single).items():
        assert len(batched[name]) == len(points), name
        for got, want in zip(batched[name], points, strict=True):
            assert got == want or (math.isnan(got[1]) and math.isnan(want[1]) and got[0] == want[0])


def test_a_damaged_line_does_not_teach_its_shape_to_drop_a_series() -> None:
    """The first line of a shape teaches the parser which token is which series; a line whose
    number is damaged (`0.02.18`) must not, or every later line of the shape loses `loss`."""
    lines = [
        "{'loss': '0.02.18', 'grad_norm': '0.8357', 'epoch': '0.06'}",
        "{'loss': '0.4526', 'grad_norm': '0.5', 'epoch': '0.07'}",
        "{'loss': '0.4411', 'grad_norm': '0.4', 'epoch': '0.08'}",
    ]
    for feed in ([lines], [[line] for line in lines]):
        parser = LineMetricsParser()
        points: list[MetricPoint] = []
        for piece in feed:
            points.extend(parser.feed(piece))
        assert series_of(points)["loss"] == [(None, 0.4526), (None, 0.4411)]
        assert len(series_of(points)["grad_norm"]) == 3


def test_a_shape_reads_each_line_exactly_not_by_the_first_lines_widths() -> None:
    """Two lines of one shape (digits removed) may place their numbers differently: the
    second is read from its own text (0.0829, not 0.082 cut at the first line's width)."""
    lines = [
        "{'loss': '0.5', 'epoch': '0.1'}0",
        "{'loss': '0.4', 'epoch': '0.0829'}",
    ]
    got = series_of(LineMetricsParser().feed(lines))
    assert got["epoch"][-1] == (None, 0.0829)
    assert got["loss"] == [(None, 0.5), (None, 0.4)]


def test_feed_columns_gives_each_series_steps_and_values() -> None:
    parser = LineMetricsParser()
    lines = [f"step {n} | loss={1 / n:.4f} lr=3.0e-04" for n in range(1, 6)]
    columns = parser.feed_columns(lines)
    assert list(columns) == ["loss", "lr"]
    steps, values = columns["loss"]
    assert steps == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert values == [1.0, 0.5, 0.3333, 0.25, 0.2]
    assert columns["lr"] == ([1.0, 2.0, 3.0, 4.0, 5.0], [0.0003] * 5)
    assert parser.feed_columns(["step 5 | loss=0.2000 lr=3.0e-04"]) == {}  # a repeat


def test_garbled_bar_counters_and_epochs_are_read_not_raised() -> None:
    """A counter of a digit that float() refuses (`²`, which isdigit() passes) and an epoch
    past the floats once raised out of feed and lost the batch; they are read as far as they
    can be: no step from `²/100`, the bar's own count where the epoch cannot be used."""
    parser = LineMetricsParser()
    got = parser.feed_columns(
        [
            "\rEpoch 3:  50%|█ | ²/100 [00:01<00:01, 4.2it/s, loss=0.5]",
            "\r²/8 ━━ 0s 4ms/step - loss: 0.28",
            f"\rEpoch {'9' * 320}/2 ━━━━━━━━━━ 3/5 0:00:01 • 0:00:02 4.20it/s train_loss: 1.410",
            "Epoch " + "7" * 400 + "/10",
            "\r4/8 ━━━━ 0s 4ms/step - loss: 0.5",
        ]
    )
    assert got == {"loss": ([1.0, 4.0], [0.28, 0.5]), "train_loss": ([3.0], [1.41])}


def test_a_batch_that_raises_leaves_no_line_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines of a known shape wait in their shape's bucket until the batch ends; if the batch
    raises, the bucket must be emptied, or every later line of that shape is lost."""
    parser = LineMetricsParser()
    assert parser.feed_columns(["step 1 loss=0.5"]) == {"loss": ([1.0], [0.5])}
    real_line = LineMetricsParser._line

    def failing(self: LineMetricsParser, line: str, out: Any) -> None:
        if "boom" in line:
            raise RuntimeError("boom")
        real_line(self, line, out)

    monkeypatch.setattr(LineMetricsParser, "_line", failing)
    with pytest.raises(RuntimeError):
        parser.feed_columns(["step 2 loss=0.6", "boom 1", "step 3 loss=0.7"])
    monkeypatch.setattr(LineMetricsParser, "_line", real_line)
    assert parser.feed_columns(["step 4 loss=0.8", "step 5 loss=0.9"]) == {
        "loss": ([4.0, 5.0], [0.8, 0.9])
    }
