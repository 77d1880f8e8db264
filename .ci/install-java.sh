#!/usr/bin/env bash
# What the ScienceWorld tests need: a Java 17+ runtime, and Python's pip (used once to fetch
# the scienceworld 1.2.3 wheel from PyPI into ~/.cache/stepagent or $STEPAGENT_CACHE).
# Without Java those tests report "skipped" and pass; CI runs this first so that they run.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends openjdk-17-jre-headless
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3-pip
fi
java -version 2>&1 | head -1
