# runctl-tui tasks. `just --list` shows them; `just check` is what CI runs.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
python := venv / "bin/python"

# Show the recipes.
default:
    @just --list

# Create the virtualenv and install runctl-tui with every dev tool.
setup:
    test -x {{python}} || python3 -m venv {{venv}}
    {{python}} -m pip install -q -e '.[dev]'

# Open the dashboard (extra arguments go to runctl-tui).
run *ARGS:
    {{venv}}/bin/runctl-tui {{ARGS}}

# Open the dashboard on a real local training run of the bundled example.
demo:
    {{venv}}/bin/runctl-tui --demo

# The dashboard beside the loopback RunPod and AWS (moto) test servers; no account needed.
demo-cloud port="8765" aws_port="8766":
    #!/usr/bin/env bash
    set -euo pipefail
    {{python}} -m runctl_tui.testing.runpod_server --port {{port}} &
    rp=$!
    {{python}} -m moto.server -p {{aws_port}} >/dev/null 2>&1 &
    moto=$!
    trap 'kill $rp $moto' EXIT
    sleep 1
    RUNPOD_API_KEY=demo-key RUNCTL_RUNPOD_API_URL=http://127.0.0.1:{{port}} \
    AWS_ENDPOINT_URL=http://127.0.0.1:{{aws_port}} AWS_ACCESS_KEY_ID=AKIADEMO000000000000 \
    AWS_SECRET_ACCESS_KEY=demo-secret AWS_DEFAULT_REGION=us-east-1 \
    {{venv}}/bin/runctl-tui --demo

# Build the wheel into dist/.
build:
    {{python}} -m pip wheel --no-deps -w dist .

# Rebuild the metrics parser's C extension in place after editing _speedups.c.
ext:
    {{python}} -m pip install -q --no-deps -e .

# Train the bundled example in the foreground (extra arguments go to the script).
train-local *ARGS:
    {{venv}}/bin/runctl local runctl_tui/examples/train_demo.py {{ARGS}}

# Create a RunPod pod with the configured defaults and wait for it.
runpod-create *ARGS:
    {{venv}}/bin/runctl runpod create --wait {{ARGS}}

# Follow a log file (and a checkpoint directory) like `tail -F`.
monitor log="runs" checkpoints="checkpoints":
    {{venv}}/bin/runctl monitor --log {{log}} --checkpoint {{checkpoints}} --follow

# The whole test suite.
test *ARGS:
    {{python}} -m pytest {{ARGS}}

# Formatting, lint, types and tests: everything CI checks.
check:
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/ruff check .
    {{venv}}/bin/mypy
    {{python}} -m pytest

# Apply formatting and safe lint fixes.
fmt:
    {{venv}}/bin/ruff format .
    {{venv}}/bin/ruff check --fix .

# Performance figures (logs, metrics, checkpoints, UI); each prints beside its baseline.
bench:
    {{python}} bench/logs.py
    {{python}} bench/metrics.py
    {{python}} bench/checkpoints.py
    {{python}} bench/local_runs.py
    {{python}} bench/ssh.py
    {{python}} bench/ui.py

# Regenerate the SVG screenshots in screenshots/ from a deterministic state.
screenshots:
    {{python}} -m runctl_tui.ui.screenshots screenshots
