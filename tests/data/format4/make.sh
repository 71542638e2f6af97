#!/usr/bin/env bash
# Make tests/data/format4/ with the previous release's own code (store
# format 4): see tests/data/format4/README.
#   usage: make.sh OLD_CHECKOUT OUT_DIR
set -euo pipefail
OLD=$(cd "$1" && pwd); OUT=$2
# Absolute, as the commands run from OLD_CHECKOUT (not resolved: a venv's
# python is a link to the one it was made from).
PY=$(command -v "${PYTHON:-python3}")
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
PORT=${KEYCARD_PORT:-8871}
WORK=$(mktemp -d)
BOUNCER=
trap 'if [ -n "$BOUNCER" ]; then kill "$BOUNCER" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
export PYTHONPATH=$OLD
keycard() { (cd "$OLD" && "$PY" -m twisted_keycard.admin "$@"); }
DATA=$WORK/data
LONG=300000000   # tokens valid for ~9.5 years, so a test can use them for real
keycard init "$DATA" >/dev/null
for user in alice bob carol; do
    echo "$user password" | keycard user add --data-dir "$DATA" "$user" >/dev/null
done
(cd "$OLD" && exec "$(dirname "$PY")/twistd" -n --logfile "$WORK/bouncer.log" \
    keycard-bouncer --data-dir "$DATA" --listen "tcp:$PORT:interface=127.0.0.1" \
    --duration $LONG --max-family-lifetime $LONG) &
BOUNCER=$!
for _ in $(seq 100); do
    grep -q "listening" "$WORK/bouncer.log" 2>/dev/null && break; sleep 0.1
done
C="tcp:127.0.0.1:$PORT"
login() { echo "$1 password" | keycard login --connect "$C" "$1" --save-token "$WORK/$2"; }
login alice alice.token            # signed with the first key
login bob bob.token
login carol carol.token
echo "wrong" | keycard login --connect "$C" carol || true   # throttle failures
echo "wrong" | keycard login --connect "$C" nobody || true
keycard revoke --data-dir "$DATA" --reason "fixture: revoked" \
    "$(keycard list --data-dir "$DATA" --avatar bob --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
keycard keys rotate --data-dir "$DATA" --grace $LONG
sleep 2.5                          # the bouncer follows the new key
login alice alice2.token           # signed with the second key
keycard list --data-dir "$DATA" --json > "$WORK/list.json"
kill -TERM "$BOUNCER"; wait "$BOUNCER" || true
"$PY" - "$DATA/keycard.db" <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
assert c.execute("PRAGMA user_version").fetchone() == (4,), "not format 4"
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.execute("PRAGMA journal_mode = DELETE")
c.close()
PYEOF
mkdir -p "$OUT"
cp "$DATA/keycard.db" "$WORK"/*.token "$WORK/list.json" "$OUT/"
