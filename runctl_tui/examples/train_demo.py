# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""A tiny but real training run, standard library only: logistic regression trained with SGD.

It makes a synthetic binary classification problem from a seed, trains on mini-batches with a
cosine learning-rate schedule, and behaves like a real training script:

- prints one line per step, `epoch 1/5 step 12 loss=0.5312 lr=0.0998`, and per epoch
  `epoch 1/5 step 60 val_loss=0.4211 val_accuracy=0.8750`;
- appends the same figures to `metrics.jsonl` next to `$RUNCTL_LOG_PATH` (when runctl runs it);
- writes a checkpoint every `--checkpoint-every` steps to `--checkpoint-dir` (default
  `$RUNCTL_CHECKPOINT_DIR`, else `checkpoints`) as `ckpt-step000120.json`, and points `best.json`
  at the one with the lowest validation loss;
- `--resume PATH` continues from a checkpoint (and says so);
- SIGINT or SIGTERM saves a checkpoint, then exits with 130 or 143.

By default it lasts about two and a half minutes (5 epochs x 60 steps x 0.5 s); `--sleep 0`
makes it finish in a blink.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

CHECKPOINT_KEY = "runctl_demo_checkpoint"
FEATURES = 8
TRAIN_SAMPLES = 2048
VAL_SAMPLES = 512

_stop_signal: int | None = None


def _on_signal(signum: int, frame: object) -> None:
    global _stop_signal
    _stop_signal = signum


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--steps-per-epoch", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.5, help="peak learning rate")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds per step (pacing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=20, help="steps")
    parser.add_argument(
        "--checkpoint-dir",
        default=os.environ.get("RUNCTL_CHECKPOINT_DIR") or "checkpoints",
    )
    parser.add_argument("--resume", metavar="PATH", help="continue from this checkpoint")
    args = parser.parse_args(argv)
    for name in ("epochs", "steps_per_epoch", "batch_size", "checkpoint_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.sleep < 0:
        parser.error("--sleep must not be negative")
    return args


def make_data(seed: int) -> tuple[list[list[float]], list[int], list[list[float]], list[int]]:
    """A linearly separable-ish problem: labels from a hidden weight vector plus noise."""
    rng = random.Random(seed)
    true_w = [rng.gauss(0.0, 1.5) for _ in range(FEATURES)]
    true_b = rng.gauss(0.0, 0.5)

    def sample(n: int) -> tuple[list[list[float]], list[int]]:
        xs, ys = [], []
        for _ in range(n):
            x = [rng.gauss(0.0, 1.0) for _ in range(FEATURES)]
            z = sum(w * v for w, v in zip(true_w, x, strict=True)) + true_b + rng.gauss(0.0, 1.0)
            xs.append(x)
            ys.append(1 if z > 0 else 0)
        return xs, ys

    train_x, train_y = sample(TRAIN_SAMPLES)
    val_x, val_y = sample(VAL_SAMPLES)
    return train_x, train_y, val_x, val_y


def sigmoid(z: float) -> float:
    """Numerically safe logistic function."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def bce(p: float, y: int) -> float:
    """Binary cross-entropy of one prediction."""
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return -(y * math.log(p) + (1 - y) * math.log(1.0 - p))


def evaluate(
    weights: list[float], bias: float, xs: list[list[float]], ys: list[int]
) -> tuple[float, float]:
    """Mean loss and accuracy on a data set."""
    loss = 0.0
    correct = 0
    for x, y in zip(xs, ys, strict=True):
        p = sigmoid(sum(w * v for w, v in zip(weights, x, strict=True)) + bias)
        loss += bce(p, y)
        correct += int((p >= 0.5) == bool(y))
    return loss / len(xs), correct / len(xs)


def learning_rate(peak: float, step: int, total: int) -> float:
    """Cosine decay from `peak` to a tenth of it over the run."""
    progress = min(1.0, (step - 1) / max(1, total - 1))
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so that a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def point_best(directory: Path, target: Path) -> None:
    """Make `best.json` point at `target` (a symlink; a copy where symlinks are not allowed)."""
    best = directory / "best.json"
    tmp = directory / ".best.json.tmp"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.name)
    except OSError:
        tmp.write_bytes(target.read_bytes())
    os.replace(tmp, best)


class MetricsFile:
    """Appends JSON lines next to runctl's log of this run, when there is one."""

    def __init__(self) -> None:
        log_path = os.environ.get("RUNCTL_LOG_PATH")
        self.path = Path(log_path).parent / "metrics.jsonl" if log_path else None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Train; return the exit code."""
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    ckpt_dir = Path(args.checkpoint_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    train_x, train_y, val_x, val_y = make_data(args.seed)
    total_steps = args.epochs * args.steps_per_epoch
    weights = [0.0] * FEATURES
    bias = 0.0
    step = 0
    best_val: float | None = None
    best_path: str | None = None
    if args.resume:
        resume_path = Path(args.resume)
        try:
            state = json.loads(resume_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"error: cannot read checkpoint {resume_path}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(state, dict) or state.get(CHECKPOINT_KEY) != 1:
            print(f"error: {resume_path} is not a train_demo checkpoint", file=sys.stderr)
            return 2
        weights = [float(w) for w in state["weights"]]
        bias = float(state["bias"])
        step = int(state["step"])
        best_val = state.get("best_val_loss")
        best_path = state.get("best_path")
        print(
            f"resumed from {resume_path.resolve()} at step {step} (epoch {state['epoch']})",
            flush=True,
        )
    metrics = MetricsFile()
    recent: list[float] = []

    def save(reason: str) -> Path:
        nonlocal best_val, best_path
        val_loss, val_acc = evaluate(weights, bias, val_x, val_y)
        path = ckpt_dir / f"ckpt-step{step:06d}.json"
        is_best = best_val is None or val_loss < best_val
        if is_best:
            best_val, best_path = val_loss, path.name
        state = {
            CHECKPOINT_KEY: 1,
            "step": step,
            "epoch": (step - 1) // args.steps_per_epoch + 1 if step else 0,
            "loss": sum(recent) / len(recent) if recent else None,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "best_val_loss": best_val,
            "best_path": best_path,
            "reason": reason,
            "weights": weights,
            "bias": bias,
            "config": {
                "seed": args.seed,
                "lr": args.lr,
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "steps_per_epoch": args.steps_per_epoch,
            },
            "created": time.time(),
        }
        write_json_atomic(path, state)
        if is_best:
            point_best(ckpt_dir, path)
        print(f"checkpoint saved: {path} (step {step}, val_loss={val_loss:.4f})", flush=True)
        return path

    while step < total_steps:
        if _stop_signal is not None:
            break
        step += 1
        epoch = (step - 1) // args.steps_per_epoch + 1
        lr = learning_rate(args.lr, step, total_steps)
        # Each epoch visits the data in its own fixed order, so a resumed run sees the same batches.
        order = list(range(TRAIN_SAMPLES))
        random.Random(args.seed * 1000 + epoch).shuffle(order)
        start = ((step - 1) % args.steps_per_epoch) * args.batch_size
        batch = [order[(start + i) % TRAIN_SAMPLES] for i in range(args.batch_size)]
        grad_w = [0.0] * FEATURES
        grad_b = 0.0
        loss = 0.0
        for index in batch:
            x, y = train_x[index], train_y[index]
            p = sigmoid(sum(w * v for w, v in zip(weights, x, strict=True)) + bias)
            loss += bce(p, y)
            error = p - y
            for j in range(FEATURES):
                grad_w[j] += error * x[j]
            grad_b += error
        n = len(batch)
        weights = [w - lr * g / n for w, g in zip(weights, grad_w, strict=True)]
        bias -= lr * grad_b / n
        loss /= n
        recent = [*recent[-(args.checkpoint_every - 1) :], loss]
        print(f"epoch {epoch}/{args.epochs} step {step} loss={loss:.4f} lr={lr:.4f}", flush=True)
        metrics.write({"step": step, "epoch": epoch, "loss": round(loss, 6), "lr": lr})
        if step % args.steps_per_epoch == 0:
            val_loss, val_acc = evaluate(weights, bias, val_x, val_y)
            print(
                f"epoch {epoch}/{args.epochs} step {step} val_loss={val_loss:.4f} "
                f"val_accuracy={val_acc:.4f}",
                flush=True,
            )
            metrics.write({"step": step, "epoch": epoch, "val_loss": round(val_loss, 6)})
        if step % args.checkpoint_every == 0 or step == total_steps:
            save("periodic" if step < total_steps else "final")
        # Sleep in slices so a stop request is answered within a tenth of a second.
        deadline = time.monotonic() + args.sleep
        while _stop_signal is None and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    if _stop_signal is not None:
        name = signal.Signals(_stop_signal).name
        path = save(f"interrupted by {name}")
        print(f"received {name} at step {step}; saved {path}; exiting", flush=True)
        return 128 + _stop_signal
    print(
        f"training finished after {step} steps (best val_loss={best_val:.4f}, {best_path})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
