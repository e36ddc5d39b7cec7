#!/usr/bin/env bash
# The accelerator check in one command (bench/bench_gpu.py): inference and a full training step with
# mixed precision (mixed_float16) and XLA as a fraction of the device's FLOP limit, then the fc7 cache
# build. On the device machine:   bash bench/gpu.sh            -> bench/results/gpu.json
# On CPU, at toy size (CI):       bash bench/gpu.sh --toy      -> bench/results/gpu_toy.json
# Other arguments go to bench_gpu.py (--batch, --seconds, --policy, --no-xla, --out). The interpreter is
# $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
out=bench/results/gpu.json
for arg in "$@"; do
    [ "$arg" = "--toy" ] && out=bench/results/gpu_toy.json
done
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv || true
fi
# Later --out arguments win over this default.
exec "$PY" bench/bench_gpu.py --out "$out" "$@"
