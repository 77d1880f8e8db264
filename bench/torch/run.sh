#!/usr/bin/env bash
# Our engine vs PyTorch + transformers on the same model, shapes and threads, in the same run:
# prefill, decode, scoring and training steps (full and LoRA) with peak memory.
#
#   bench/torch/run.sh [FILTER]      FILTER: prefill, decode, score or train (default: all)
#
# Model: $STEPAGENT_MODEL, else the cached default GGUF (fetched with `stepagent model fetch`
# if absent); transformers loads the same file. Threads: $RAYON_NUM_THREADS, default 2, for
# both. Installs pinned torch, transformers and gguf from PyPI into a venv under the target dir
# on first use (a few GB: PyPI's Linux torch wheel brings its CUDA libraries along).
# Writes $TARGET/torch-bench/{ours.json,torch.json,report.md}.
set -euo pipefail
cd "$(dirname "$0")/../.."
FILTER=${1:-}
TARGET=${CARGO_TARGET_DIR:-target}
VENV="$TARGET/torch-bench-venv"
OUT="$TARGET/torch-bench"
mkdir -p "$OUT"
# Absolute: cargo runs the benchmark from the package's directory.
OUT=$(cd "$OUT" && pwd)
PINS="torch==2.15.0 transformers==5.24.0 gguf==0.19.0 numpy==2.4.6 accelerate==1.15.0"
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
export OMP_NUM_THREADS=$RAYON_NUM_THREADS MKL_NUM_THREADS=$RAYON_NUM_THREADS

# The stamp names the pins, so a half-finished install or a change of pins installs again.
STAMP="$VENV/.installed-$(echo "$PINS" | tr ' =' '_-')"
if [ ! -f "$STAMP" ]; then
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    echo "installing $PINS into $VENV (first use only; several GB)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check $PINS
    touch "$STAMP"
fi

MODEL=${STEPAGENT_MODEL:-${STEPAGENT_CACHE:-$HOME/.cache/stepagent}/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ -z "${STEPAGENT_MODEL:-}" ] && [ ! -f "$MODEL" ]; then
    cargo run -q -p stepagent-cli -- model fetch
fi
[ -f "$MODEL" ] || { echo "no model at $MODEL" >&2; exit 1; }
STEPAGENT_MODEL=$(realpath "$MODEL")
export STEPAGENT_MODEL

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
rm -f "$OUT/ours.json" "$OUT/torch.json" "$OUT/report.md"
echo "== stepagent (cargo bench -p stepagent-lm --bench lm${FILTER:+ -- $FILTER}) =="
STEPAGENT_BENCH_JSON="$OUT/ours.json" cargo bench -q -p stepagent-lm --bench lm -- $FILTER
echo "== PyTorch =="
"$VENV/bin/python" bench/torch/torch_bench.py measure "$STEPAGENT_MODEL" $FILTER --json "$OUT/torch.json" >/dev/null
echo "== ratios ($OUT/report.md) =="
"$VENV/bin/python" bench/torch/torch_bench.py report "$OUT/ours.json" "$OUT/torch.json" "$OUT/report.md" \
    --load-start "$LOAD_START"
