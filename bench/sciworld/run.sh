#!/usr/bin/env bash
# ScienceWorld steps/s: our Rust path (py4j spoken from Rust) vs the official Python API, in
# the same run, on the same task, replaying the simulator's gold path.
#
#   bench/sciworld/run.sh [TASK] [VARIATION] [EPISODES]
#
# The Rust side runs in the dev profile: the time is the JVM's, and dependencies are
# optimised there anyway (see the root Cargo.toml).
# Installs scienceworld==1.2.3 into a venv under the target dir on first use. Needs Java 17+.
set -euo pipefail
cd "$(dirname "$0")/../.."
TASK=${1:-boil}
VARIATION=${2:-0}
EPISODES=${3:-5}
TARGET=${CARGO_TARGET_DIR:-target}
VENV="$TARGET/sciworld-bench-venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check scienceworld==1.2.3
fi
echo "== official Python API (scienceworld 1.2.3) =="
"$VENV/bin/python" bench/sciworld/official.py "$TASK" "$VARIATION" "$EPISODES"
echo "== stepagent (Rust, py4j protocol direct) =="
SCIWORLD_BENCH_TASK=$TASK SCIWORLD_BENCH_VARIATION=$VARIATION SCIWORLD_BENCH_EPISODES=$EPISODES \
    cargo test -q -p stepagent-env --test sciworld_bench -- --ignored --nocapture 2>&1 | grep '^{'
