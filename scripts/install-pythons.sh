#!/usr/bin/env bash
# Installs the Debian CPython builds the test-suite runs against (statically linked, stripped,
# plus their -dbg variants): bookworm 3.11, bullseye 3.9, trixie 3.13, sid 3.14, experimental 3.15.
# Extra suites are pinned low so that nothing else on the machine is upgraded from them.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
list=/etc/apt/sources.list.d/memspy-pythons.sources
pref=/etc/apt/preferences.d/memspy-pythons
if [ ! -f "$list" ]; then
  $SUDO tee "$list" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye trixie sid experimental
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $SUDO tee "$pref" >/dev/null <<'PIN'
Package: *
Pin: release n=bookworm
Pin-Priority: 990

Package: *
Pin: release n=bullseye
Pin-Priority: 100

Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=sid
Pin-Priority: 100

Package: *
Pin: release n=experimental
Pin-Priority: 100
PIN
fi
# Other third-party sources on the machine may be unreachable; only Debian's matter here.
$SUDO apt-get update -o Acquire::Retries=3 >/tmp/memspy-apt-update.log 2>&1 || \
  echo "apt-get update reported errors (see /tmp/memspy-apt-update.log); continuing" >&2
export DEBIAN_FRONTEND=noninteractive
inst() { # suite packages...
  local suite=$1; shift
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ ${#need[@]} -eq 0 ] && return 0
  echo "installing ${need[*]} from $suite" >&2
  $SUDO apt-get install -y -q --no-install-recommends -t "$suite" "${need[@]}" >/tmp/memspy-apt-$suite.log 2>&1 \
    || { echo "install from $suite failed:" >&2; tail -20 /tmp/memspy-apt-$suite.log >&2; return 1; }
}
rc=0
inst bookworm python3.11 python3.11-dbg || rc=1
inst bullseye python3.9 python3.9-dbg || rc=1
inst trixie python3.13 python3.13-dbg || rc=1
inst sid python3.14 python3.14-dbg || rc=1
inst experimental python3.15 python3.15-dbg || rc=1
exit $rc
