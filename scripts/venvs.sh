#!/usr/bin/env bash
# Virtual environments with real third-party packages from PyPI (numpy, and pandas, which is built
# with Cython), one per interpreter, for the tests of heaps made by C extensions (issue 9).
#
# Usage: scripts/venvs.sh            make what is missing, print one line per interpreter
#
# The venvs live outside the checkout, in ${MEMSPY_CACHE:-$HOME/.cache/memspy}/venvs/NAME, with NAME
# one of pyenv-3.9.18, pyenv-3.12.1, pyenv-3.13.0, debian-3.13, debian-3.14, debian-3.15. A venv is
# complete when its file memspy-venv.txt exists (written last; key=value lines: name, interpreter,
# python, version, packages); a second run checks that file and that the packages import, and takes
# seconds. pyarrow is never installed: with it, pandas keeps strings in Arrow buffers, not in str
# objects.
#
# Every venv is made without ensurepip (Debian's interpreters have none): `python -m venv --without-pip`,
# then pip itself is run from its wheel inside the new venv, installs itself there, and installs the
# pinned packages. The pip wheel is fetched once (into the cache) by any pip already on the machine
# (MEMSPY_PIP, else pyenv's, else `python3 -m pip`); pip 23 cannot install into 3.15 itself.
#
# Output: "NAME: made (...)", "NAME: cached (...)" or "NAME: skipped: REASON". Exit status: 0, except
# under CI=true when no venv could be made (then 1).
set -uo pipefail

CACHE=${MEMSPY_CACHE:-$HOME/.cache/memspy}
VENVS=$CACHE/venvs
WHEELS=$CACHE/wheels
PYENV=${PYENV_ROOT:-$HOME/.pyenv}

# NAME PATH of each interpreter.
INTERPRETERS=(
  "pyenv-3.9.18 $PYENV/versions/3.9.18/bin/python3"
  "pyenv-3.12.1 $PYENV/versions/3.12.1/bin/python3"
  "pyenv-3.13.0 $PYENV/versions/3.13.0/bin/python3"
  "debian-3.13 /usr/bin/python3.13"
  "debian-3.14 /usr/bin/python3.14"
  "debian-3.15 /usr/bin/python3.15"
)

# Pinned versions per minor version: the newest releases with wheels for it (checked with
# `pip index versions --python-version X.Y --only-binary=:all:`). numpy 2.1+ and pandas 3 need 3.10+/3.11+,
# pip 26.1+ needs 3.10+. The dependencies are pinned too, so that a venv is the same on every machine.
pins() { # minor -> "pip==V package==V ..." (empty: none known)
  case $1 in
    3.9) echo "pip==26.0.1 numpy==2.0.2 pandas==2.3.3 python-dateutil==3.0.0 pytz==2026.6 six==1.17.0 tzdata==2026.6" ;;
    3.12 | 3.13 | 3.14 | 3.15) echo "pip==26.3 numpy==2.5.5 pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6" ;;
    *) echo "" ;;
  esac
}

# What the venv must show once made: the packages import, pandas' Cython-built types are there
# (a Cython function type, whose module is Cython's shared "_cython_X_Y_Z"), and pyarrow is absent.
CHECK='
import importlib.util, sys
import numpy, pandas, pandas._libs.lib as lib
t = type(lib.is_scalar)
assert t.__module__.startswith("_cython_"), repr(t)
assert importlib.util.find_spec("pyarrow") is None, "pyarrow is installed"
print("numpy %s, pandas %s, Cython types %s" % (numpy.__version__, pandas.__version__, t.__module__))
'

find_pip() { # a pip command that runs on this machine (only used to download the pip wheel)
  local c
  if [ -n "${MEMSPY_PIP:-}" ]; then echo "$MEMSPY_PIP"; return 0; fi
  for c in "$PYENV/versions/3.11.7/bin/pip" "$PYENV"/versions/3.1[0-9]*/bin/pip; do
    if [ -x "$c" ] && "$c" --version >/dev/null 2>&1; then echo "$c"; return 0; fi
  done
  for c in python3 "$PYENV"/versions/3.1[0-9]*/bin/python3; do
    if "$c" -m pip --version >/dev/null 2>&1; then echo "$c -m pip"; return 0; fi
  done
  return 1
}

pip_wheel() { # VERSION -> path of pip's wheel in the cache (downloaded once)
  local v=$1 w=$WHEELS/pip-$1-py3-none-any.whl pip
  if [ ! -f "$w" ]; then
    pip=$(find_pip) || { echo "no pip on this machine to fetch pip $v with" >&2; return 1; }
    mkdir -p "$WHEELS"
    $pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d "$WHEELS" "pip==$v" >&2 ||
      return 1
    [ -f "$w" ] || { echo "pip $v: no wheel named $(basename "$w")" >&2; return 1; }
  fi
  echo "$w"
}

# The one line of a failed pip's log worth showing.
reason_from_log() {
  local line
  line=$(grep -m1 -E 'No matching distribution|Could not find a version|requires a different Python|ERROR' \
    "$1" 2>/dev/null)
  [ -n "$line" ] || line=$(tail -n 1 "$1" 2>/dev/null)
  echo "${line#ERROR: }"
}

mkdir -p "$VENVS" || { echo "cannot create $VENVS" >&2; exit 1; }
# One run at a time (tests may start this script concurrently).
exec 9>"$VENVS/.lock"
flock 9

ok=0
for entry in "${INTERPRETERS[@]}"; do
  name=${entry%% *}
  py=${entry#* }
  dir=$VENVS/$name
  if [ ! -x "$py" ]; then
    echo "$name: skipped: $py is not installed"
    continue
  fi
  real=$(readlink -f "$py")
  minor=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || {
    echo "$name: skipped: $py does not run"
    continue
  }
  spec=$(pins "$minor")
  if [ -z "$spec" ]; then
    echo "$name: skipped: no pinned numpy/pandas versions for Python $minor"
    continue
  fi
  marker=$dir/memspy-venv.txt
  if [ -f "$marker" ] && grep -qxF "packages=$spec" "$marker" && grep -qxF "interpreter=$real" "$marker" &&
    got=$("$dir/bin/python" -I -c "$CHECK" 2>/dev/null); then
    echo "$name: cached ($got)"
    ok=$((ok + 1))
    continue
  fi
  start=$SECONDS
  rm -rf "$dir"
  log=$VENVS/$name.log
  : >"$log"
  pipv=${spec%% *}
  pipv=${pipv#pip==}
  why=
  if ! "$py" -m venv --without-pip "$dir" >>"$log" 2>&1; then
    why="python -m venv failed: $(tail -n 1 "$log")"
  elif ! wheel=$(pip_wheel "$pipv" 2>>"$log"); then
    why="could not fetch pip $pipv: $(reason_from_log "$log")"
  elif ! "$dir/bin/python" "$wheel/pip" install --quiet --disable-pip-version-check --no-index "$wheel" \
    >>"$log" 2>&1; then
    why="pip $pipv does not install into Python $minor: $(reason_from_log "$log")"
  elif ! PIP_NO_INPUT=1 "$dir/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    --only-binary=:all: $spec >>"$log" 2>&1; then
    why="no wheels for Python $minor: $(reason_from_log "$log")"
  elif ! got=$("$dir/bin/python" -I -c "$CHECK" 2>>"$log"); then
    why="the packages do not import: $(tail -n 1 "$log")"
  fi
  if [ -n "$why" ]; then
    rm -rf "$dir"
    echo "$name: skipped: $why"
    continue
  fi
  printf 'name=%s\ninterpreter=%s\npython=%s\nversion=%s\npackages=%s\n' \
    "$name" "$real" "$dir/bin/python" "$("$py" -c 'import sys; print(sys.version.split()[0])')" "$spec" \
    >"$marker.tmp" && mv "$marker.tmp" "$marker"
  rm -f "$log"
  echo "$name: made ($got) in $((SECONDS - start)) s"
  ok=$((ok + 1))
done

echo "venvs: $ok made or cached in $VENVS"
if [ "$ok" -eq 0 ] && [ "${CI:-}" = true ]; then
  echo "no venv could be made (CI=true)" >&2
  exit 1
fi
exit 0
