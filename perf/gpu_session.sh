#!/usr/bin/env bash
# One prepared GPU session, about 8 minutes of wall time on an H200 image (torch 2.11, Triton 3.6,
# pandas, matplotlib, tqdm, pytest; no network, no pip installs). In order, each phase under its own
# time limit, a failing phase never stopping the next:
#   info; the GPU tests (pytest -m gpu); the suite's fp32 cases on CUDA; validate; the per-stage
#   breakdown (perf/breakdown.py: barrier against ready flags, stages left out, each row beside the
#   cost model's figure for it); the example's tokens per second with both GRUs; the tuner over the
#   inference target shapes (H=1024 B=1 first, candidates in the cost model's order, stopped by a
#   time budget); the default perf sweep (target shapes first, tritongru beside eager cuDNN and
#   cuDNN in a CUDA graph, the model's step in every tritongru row, stopped by a time budget, using
#   the tuned table just written); the stack sweep (KernelBench 39/40 first). Worst case (every phase
#   at its limit): 565 s.
# Output, in $OUT (at most 8 files): session.log, SUMMARY.md, results.csv, breakdown.csv,
# tuning.json, and artifacts.tar (the whole results folder with the PNG plots, and the pytest XML
# reports).
#
# Run from anywhere:   OUT=/some/dir TRITONGRU_SOURCE_REVISION=<commit> bash perf/gpu_session.sh
# TRITONGRU_SOURCE_REVISION names the commit in the result rows where the tree has no .git.
set -uo pipefail  # no -e: every phase runs whatever the previous one did

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/tritongru-gpu-session}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1

# The package installed as any user installs it (the GPU image has every dependency and no
# network); perf/ is imported from the checkout.
"$PY" -m pip install -q --no-deps --no-build-isolation -e "$REPO" || exit 2
export PYTHONUNBUFFERED=1
export TRITONGRU_TUNING_FILE="$WORK/tuning.json"
unset TRITON_INTERPRET TRITONGRU_AUTOTUNE
cd "$REPO" || exit 2

phase() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@"
    echo "=== $name: exit $? after $((SECONDS - start)) s"
}

phase info 20 "$PY" -m tritongru info
# Several workers compile the kernel variants in parallel (cooperative launches keep the barrier
# kernels safe beside each other).
phase gpu-tests 150 "$PY" -m pytest -q -p no:cacheprovider -n 6 -m gpu --junitxml="$WORK/pytest-gpu.xml" tests
# The CPU suite's fp32 cases on CUDA (the compile report needs no GPU: CI runs it).
phase suite-on-cuda 45 "$PY" -m pytest -q -p no:cacheprovider -n 6 -m "not gpu" -k "fp32 or streaming" \
    --junitxml="$WORK/pytest-suite.xml" tests/test_gru_module.py tests/test_streaming.py tests/test_gru_errors.py
phase validate 50 "$PY" -m tritongru validate
phase breakdown 60 "$PY" -m perf.breakdown --seq-len 512 --batch 1 16 --rep-ms 50 --out "$REPO/perf/results"
phase example-tritongru 40 "$PY" examples/char_lm.py --impl tritongru --steps 40 --no-progress --checkpoint "$WORK/lm.pt"
phase example-torch 20 "$PY" examples/char_lm.py --impl torch --steps 40 --no-progress --checkpoint "$WORK/lm-torch.pt"
# The latency target first (H=1024, B=1: barrier against ready flags), then B=256 (batch tiles).
phase tune 50 "$PY" -m tritongru tune --hidden 1024 512 256 --batch 1 256 --mode inference --max-configs 4 --seq-len 64 --time-budget 35
# The budget stops new cases; the limit leaves room for the case running at the budget and the report.
phase bench 85 "$PY" -m tritongru bench --sweep default --time-budget 50 --out "$REPO/perf/results"
# KernelBench 39/40 first: all six layers in one launch beside one launch per layer and cuDNN.
phase stack 45 "$PY" -m tritongru bench --sweep stack --time-budget 20 --out "$REPO/perf/results"

# Collect: this GPU's results folder, the tuned table, the test reports.
slug=$("$PY" -c "import torch; from tritongru.environment import slug; print(slug(torch.cuda.get_device_name()))")
results="$REPO/perf/results/$slug"
mkdir -p "$WORK/artifacts"
cp "$WORK"/pytest-*.xml "$WORK/artifacts/" 2>/dev/null
if [ -d "$results" ]; then
    cp -r "$results" "$WORK/artifacts/"
    cp "$results/results.csv" "$results/breakdown.csv" "$results/SUMMARY.md" "$OUT/" 2>/dev/null
fi
[ -e "$TRITONGRU_TUNING_FILE" ] && cp "$TRITONGRU_TUNING_FILE" "$OUT/tuning.json"
tar -cf "$OUT/artifacts.tar" -C "$WORK" artifacts
echo "=== files in $OUT:"
ls -l "$OUT"
