#!/bin/sh
# Run irctest's core set (../shared/IRC.md) against lairchat's IRC front end.
#
#   bench/irctest/run.sh [extra pytest arguments, e.g. -k testNickCollision]
#
# Uses the repository's venv (.venv, made with lairchat installed when
# missing; LAIRCHAT_VENV to choose another), makes a venv of its own for
# irctest (bench/irctest/.venv-irctest: pytest!=9.0.0, ecdsa, filelock,
# websockets, pytest-timeout), starts one embedded Postgres for the run,
# and runs the pinned irctest in ../shared/irctest (beside the repository,
# never modified) with the controller lairchat_controller.py, which starts
# a fresh server on a fresh database per test.  Prints pass/fail/skip per
# file; the full pytest output is in $OUT (default /tmp/lairchat-irctest).
# IRCTEST_FILES="away_notify account_tag ..." runs those files of
# irctest/server_tests instead of the core set.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
IRCTEST=${IRCTEST:-$(cd "$REPO/../shared/irctest" && pwd)}
LAIRCHAT_VENV=${LAIRCHAT_VENV:-$REPO/.venv}
IRCTEST_VENV=${IRCTEST_VENV:-$HERE/.venv-irctest}
OUT=${OUT:-/tmp/lairchat-irctest}
mkdir -p "$OUT"

if [ ! -x "$LAIRCHAT_VENV/bin/twistd" ]; then
    python3 -m venv "$LAIRCHAT_VENV"
    "$LAIRCHAT_VENV/bin/pip" install -q "$REPO"
fi
if [ ! -x "$IRCTEST_VENV/bin/pytest" ]; then
    python3 -m venv "$IRCTEST_VENV"
    "$IRCTEST_VENV/bin/pip" install -q 'pytest!=9.0.0' ecdsa filelock websockets pytest-timeout
fi

PGDIR=$(mktemp -d)
"$LAIRCHAT_VENV/bin/python" "$HERE/postgres_holder.py" "$PGDIR/data" "$PGDIR/dsn" &
HOLDER=$!
trap 'kill $HOLDER 2>/dev/null; wait $HOLDER 2>/dev/null; rm -rf "$PGDIR"' EXIT INT TERM
while [ ! -s "$PGDIR/dsn" ]; do
    kill -0 $HOLDER 2>/dev/null || { echo "Postgres did not start" >&2; exit 1; }
    sleep 0.2
done

LAIRCHAT_IRCTEST_DSN=$(cat "$PGDIR/dsn")
LAIRCHAT_IRCTEST_BIN=$LAIRCHAT_VENV/bin
LAIRCHAT_IRCTEST_PGBIN=$("$LAIRCHAT_VENV/bin/python" -c \
    'import os, pgserver; print(os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin"))')
export LAIRCHAT_IRCTEST_DSN LAIRCHAT_IRCTEST_BIN LAIRCHAT_IRCTEST_PGBIN
# the controller, and this tree's code ahead of the copy installed in the venv
export PYTHONPATH="$HERE:$REPO${PYTHONPATH:+:$PYTHONPATH}"

FILES=""
CORE="connection_registration cap sasl join part messages topic names who whois invite kick
      pingpong quit labeled_responses chathistory message_tags echo_message buffering"
for f in ${IRCTEST_FILES:-$CORE}; do
    FILES="$FILES irctest/server_tests/$f.py"
done

cd "$IRCTEST"
status=0
# shellcheck disable=SC2086
"$IRCTEST_VENV/bin/python" -m pytest --controller lairchat_controller --timeout 60 -p no:cacheprovider \
    -m 'not implementation-specific and not deprecated and not strict' -rA -q --junitxml="$OUT/junit.xml" $FILES "$@" \
    > "$OUT/pytest.txt" 2>&1 || status=$?

# The per-file counts, from the JUnit report (an xfail counts as a skip).
"$LAIRCHAT_VENV/bin/python" - "$OUT/junit.xml" <<'PY'
import collections, sys, xml.etree.ElementTree as ET
counts = collections.defaultdict(collections.Counter)
for case in ET.parse(sys.argv[1]).iter("testcase"):
    name = case.get("classname", "").split(".")
    module = name[2] if len(name) > 2 and name[1] == "server_tests" else ".".join(name)
    kinds = {child.tag for child in case}
    kind = "fail" if kinds & {"failure", "error"} else "skip" if "skipped" in kinds else "pass"
    counts[module][kind] += 1
total = collections.Counter()
print("| file | pass | fail | skip |")
print("|---|---|---|---|")
for module, c in counts.items():
    total.update(c)
    print(f"| {module} | {c['pass']} | {c['fail']} | {c['skip']} |")
print(f"| **total** | {total['pass']} | {total['fail']} | {total['skip']} |")
PY
echo "full output: $OUT/pytest.txt (pytest exit status $status)"
