#!/usr/bin/env bash
# Builds the CPython interpreters that no package source serves, from the unmodified upstream tarballs
# in ../shared/pythons (override with MEMSPY_PYTHON_SOURCES): free-threaded 3.13.12t, 3.14.6t and
# 3.15.0b4t (--disable-gil) and the GIL 3.14.4 (the last release with the incremental collector).
# Each goes to ~/.cache/memspy/pythons/<version>[t]; a prefix that already holds a working interpreter
# is kept, so a second run only checks. Plain builds (no PGO/LTO), with the default -g debug info the
# layout tests read. Builds happen in a temporary directory outside the checkout.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="${MEMSPY_PYTHON_SOURCES:-$here/../shared/pythons}"
cache="${MEMSPY_PYTHONS:-$HOME/.cache/memspy/pythons}"
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
mkdir -p "$cache"
# One build at a time, even if two runs start together.
exec 9>"$cache/.build.lock"
flock 9

# version, "t" or "", expected sys._is_gil_enabled() result at start ("False" for FT, "True" for GIL)
builds=(
  "3.14.4  "
  "3.13.12 t"
  "3.14.6  t"
  "3.15.0b4 t"
)

works() { # prefix version suffix
  local exe="$1/bin/python${2%.*}$3"
  [ -f "$1/.memspy-built" ] && [ -x "$exe" ] || return 1
  "$exe" - "$2" "$3" <<'PY' >/dev/null 2>&1
import sys, sysconfig
want, t = sys.argv[1], sys.argv[2]
v = sys.version.split()[0]
assert v == want, v
assert bool(sysconfig.get_config_var("Py_GIL_DISABLED")) == (t == "t")
PY
}

need_apt=()
for p in libmpdec-dev libzstd-dev; do dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p"); done

rc=0
for b in "${builds[@]}"; do
  read -r ver t <<<"$b"
  prefix="$cache/$ver$t"
  if works "$prefix" "$ver" "$t"; then
    echo "python $ver$t: cached in $prefix" >&2
    continue
  fi
  tarball="$src/Python-$ver.tar.xz"
  if [ ! -f "$tarball" ]; then
    echo "python $ver$t: source $tarball not found (set MEMSPY_PYTHON_SOURCES)" >&2
    rc=1; continue
  fi
  if ! (cd "$src" && grep " Python-$ver.tar.xz\$" SHA256SUMS | sha256sum -c --status -); then
    echo "python $ver$t: checksum of $tarball does not match $src/SHA256SUMS" >&2
    rc=1; continue
  fi
  if [ ${#need_apt[@]} -gt 0 ]; then
    # Neither is in bookworm at a usable version: libmpdec-dev comes from trixie (which
    # install-pythons.sh adds), libzstd-dev at exactly the version of the libzstd1 already installed.
    pkgs=()
    for p in "${need_apt[@]}"; do
      v=$(dpkg-query -W -f='${Version}' "${p%-dev}1" 2>/dev/null || true)
      if [ "$p" = libzstd-dev ] && [ -n "$v" ]; then pkgs+=("$p=$v"); else pkgs+=("$p"); fi
    done
    echo "installing ${pkgs[*]} (for _decimal and _zstd)" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends -t trixie "${pkgs[@]}" \
      >/tmp/memspy-apt-build-pythons.log 2>&1 \
      || { echo "apt-get install failed:" >&2; tail -20 /tmp/memspy-apt-build-pythons.log >&2; exit 1; }
    need_apt=()
  fi
  flags=(--prefix="$prefix")
  [ "$t" = t ] && flags+=(--disable-gil)
  work="$(mktemp -d "${TMPDIR:-/tmp}/memspy-build-$ver$t.XXXXXX")"
  log="$work/build.log"
  echo "python $ver$t: building in $work (log $log), a few minutes per build" >&2
  start=$(date +%s)
  rm -rf "$prefix"
  if (cd "$work" && tar xf "$tarball" && cd "Python-$ver" \
      && ./configure "${flags[@]}" && make -j2 && make install) >"$log" 2>&1 \
      && touch "$prefix/.memspy-built" && works "$prefix" "$ver" "$t"; then
    echo "python $ver$t: built in $(( $(date +%s) - start )) s" >&2
    rm -rf "$work"
  else
    echo "python $ver$t: build failed after $(( $(date +%s) - start )) s; last lines of $log:" >&2
    tail -30 "$log" >&2
    rm -rf "$prefix"
    rc=1
  fi
done
exit $rc
