#!/usr/bin/env bash
# The system programs `make test` needs beyond Python packages, installed when missing:
#   postgresql   the store tests start a real server (initdb, pg_ctl, postgres);
#   chromium     the monitor's browser test drives Debian's Chromium (/usr/bin/chromium);
#   python3-venv only when .venv does not exist yet and $PYTHON cannot create one (no ensurepip).
# On Debian (dpkg present) the missing packages are installed with apt-get when this runs as
# root or sudo works without a password (`sudo -n`); otherwise it stops at once with the command
# to run. Without dpkg it only checks that the programs are there and says which are not.
# Idempotent: with everything present it installs nothing and prints nothing.
set -euo pipefail

PYTHON=${PYTHON:-python3}
PG_ROOT=${SYSTEM_DEPS_PG_ROOT:-/usr/lib/postgresql}  # overridable for tests only
CHROMIUM=${SYSTEM_DEPS_CHROMIUM:-/usr/bin/chromium}  # kit.app.launch.CHROMIUM
VENV=${VENV:-.venv}

say() { echo "system-deps: $*" >&2; }

if command -v dpkg >/dev/null 2>&1; then
    wanted=(postgresql chromium)
    if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
        wanted+=(python3-venv)
    fi
    missing=()
    for p in "${wanted[@]}"; do
        # `dpkg -s` also succeeds for removed packages whose config files remain: read Status
        dpkg -s "$p" 2>/dev/null | grep -qx 'Status: install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && exit 0

    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        say "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
        exit 1
    fi
    say "installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    exit 0
fi

# Not Debian: check for the programs themselves.
absent=()
have_pg=""
for bindir in "$PG_ROOT"/*/bin; do
    [ -x "$bindir/initdb" ] && [ -x "$bindir/pg_ctl" ] && [ -x "$bindir/postgres" ] && have_pg=1
done
if [ -z "$have_pg" ] && ! { command -v initdb && command -v pg_ctl && command -v postgres; } \
    >/dev/null 2>&1; then
    absent+=("PostgreSQL server programs (initdb, pg_ctl, postgres on PATH or under $PG_ROOT/*/bin)")
fi
[ -x "$CHROMIUM" ] || absent+=("Chromium at $CHROMIUM")
if [ ${#absent[@]} -gt 0 ]; then
    need=$(printf '%s; ' "${absent[@]}")
    say "not Debian (no dpkg), so nothing is installed; make test needs: ${need%; }"
    exit 1
fi
