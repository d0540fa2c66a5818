# Shared by bin/demo and bin/test: the project's own virtual environment.
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${JINGTIAO_VENV:-$ROOT/.venv}"

pick_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "jingtiao: Python 3.11 or newer is needed and none was found on PATH." >&2
  return 1
}

# ensure_venv EXTRAS: create the venv if needed and install the project with EXTRAS.
# A stamp of pyproject.toml's hash skips the install when nothing changed.
ensure_venv() {
  local extras="$1" stamp
  if [ ! -x "$VENV/bin/python" ]; then
    "$(pick_python)" -m venv "$VENV"
  fi
  stamp="$VENV/.jingtiao-$(echo "$extras" | tr ',' '-')-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "jingtiao: installing the project and its [$extras] extras into $VENV"
    # torch is pinned in pyproject: a CPU build is taken where one is on disk.
    if ! { "$VENV/bin/python" -m pip install --upgrade pip &&
           "$VENV/bin/python" -m pip install -e ".[$extras]"; } >"$VENV/pip.log" 2>&1; then
      tail -n 40 "$VENV/pip.log" >&2
      echo "jingtiao: the install failed; the whole log is $VENV/pip.log" >&2
      exit 1
    fi
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}
