#!/usr/bin/env bash
# One command for the benchmark: installs what it needs (wrk from the distribution's
# packages; gunicorn, waitress, granian, fastpysgi, pyruvate, uWSGI and matplotlib as
# prefork's optional "bench" dependencies),
# then runs bench/run.py with the arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else
    sudo apt-get update -qq && sudo apt-get install -y -qq wrk; fi
fi
python3 -m venv .venv
.venv/bin/pip install -q -e '.[bench]'
# bjoern (optional: the C floor the native path is measured against) needs libev.
if [ "$(id -u)" = 0 ] && ! [ -e /usr/include/ev.h ]; then
  apt-get install -y -qq libev-dev >/dev/null 2>&1 || true
fi
.venv/bin/pip install -q bjoern 2>/dev/null || echo "bjoern not installed: skipped"
exec .venv/bin/python bench/run.py "$@"
