#!/usr/bin/env bash
# The compiled core's unit tests under valgrind's memcheck: run after every change to
# prefork/_native*.c (tests/README.md). An error counts here only if a frame of its stack
# is in prefork._native, and its uninitialised value was not made by CPython's own int
# allocation: CPython 3.11 reads the unused digit of a zero int (maybe_small_long), and
# that taint follows the int into whatever code holds it (a Content-Length: 0 parsed by
# int()). Exit 1 if any counts.
#
#   bash tests/valgrind_native.sh [pytest args]     # default: every tests/unit/test_native*.py
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
log=$(mktemp /tmp/valgrind-native.XXXXXX)
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(tests/unit/test_native.py tests/unit/test_native_adopt.py
  tests/unit/test_native_conn.py tests/unit/test_native_exchange.py
  tests/unit/test_native_worker.py tests/unit/test_native_wsgi.py tests/unit/test_fields.py
  tests/unit/test_native_seam.py)
PYTHONMALLOC=malloc valgrind --quiet --log-file="$log" --num-callers=40 --track-origins=yes \
  --errors-for-leak-kinds=none "$py" -m pytest -q -p no:cacheprovider -p no:randomly \
  --timeout 3000 "${args[@]}"
status=$?
"$py" - "$log" <<'PY' || exit 1
import re, sys
text = open(sys.argv[1], errors="replace").read()
# A report begins with a message line; frames ("at", "by") and the origin follow it.
reports = re.split(r"\n(?===\d+== (?!Uninitialised value was created)[A-Z][a-z])", text)
reports = [r for r in reports if re.match(r"==\d+== [A-Z]", r)]
def ours(report: str) -> bool:
    head, _, origin = report.partition("Uninitialised value was created")
    return "_native" in head and "_PyLong_New" not in origin
counted = [r for r in reports if ours(r)]
print(f"valgrind: {len(reports)} error report(s), {len(counted)} with a frame in "
      f"prefork._native not made by CPython's int allocation (log: {sys.argv[1]})")
for report in counted[:5]:
    print(report[:3000])
sys.exit(1 if counted else 0)
PY
# Tests that wait on clocks may time out under valgrind's slowness: they are run for the
# memory checks, and judged by the normal run.
[ $status -ne 0 ] && echo "($status: some tests failed or timed out under valgrind)"
exit 0
