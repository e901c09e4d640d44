"""Sample: a real tqdm bar with set_postfix(loss=...) as a terminal receives it (`\\r` form).

Writes tests/data/metrics/tqdm/postfix.raw (raw pty bytes) and ground_truth.json: the postfix
values this script set, each with the bar's own counter `bar.n` at that moment (what the bar
displays; tqdm syncs it lazily, so a fast loop shows a stale count) and the loop index.
"""

from __future__ import annotations

import json
import math
import sys

from metrics_capture import out_dir, run_in_pty


def child() -> None:
    import tqdm

    truth = []
    bar = tqdm.tqdm(range(40), desc="train", ncols=100)
    for i in bar:
        loss = 2.5 * math.exp(-i / 15)
        bar.set_postfix(loss=loss)
        truth.append([bar.n, loss, i])
    bar.close()
    # An unbounded bar (no total) with two postfix values.
    bar = tqdm.tqdm(desc="eval", ncols=100)
    for i in range(5):
        bar.update(1)
        acc = 0.5 + i / 10
        bar.set_postfix(acc=acc, refresh=True)
        truth.append([bar.n, acc, i + 1])
    bar.close()
    with open(sys.argv[2], "w") as fh:
        json.dump(
            {
                "tqdm_version": tqdm.__version__,
                "postfix": truth,
                "columns": ["bar.n", "value", "loop index"],
            },
            fh,
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child()
    else:
        target = out_dir("tqdm")
        truth_path = target / "ground_truth.json"
        raw = run_in_pty([__file__, "--child", str(truth_path)], columns=100)
        (target / "postfix.raw").write_bytes(raw)
        print(f"wrote {len(raw)} bytes")
