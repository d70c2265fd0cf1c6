#!/usr/bin/env bash
# Installs the services and programs the tests run against, from Debian: prometheus (tests/serve.rs starts
# the binary itself, on loopback, with a temporary config and storage), zsh and fish (tests/cli.rs checks
# the completion scripts with them), gdb (tests/core_files.rs takes core files with its gcore). Idempotent and quiet: nothing is done when
# the packages are there. Also Node.js and npm and Chromium (Debian; tests/export.rs renders `memspy report`'s
# page headless), and memlab and VS Code's heap snapshot parser from the npm registry into
# ~/.cache/memspy/npm (tests/export.rs loads `memspy export`'s .heapsnapshot with both;
# PUPPETEER_SKIP_DOWNLOAD: memlab needs no browser of its own). The packaged service is never started: while installing, a policy-rc.d that
# refuses every start is put in place (unless the machine has one already) and removed after.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
need=()
for p in prometheus zsh fish chromium gdb; do
  # (A removed package whose config files remain still answers `dpkg -s`: look at its status.)
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || need+=("$p")
done
# Node.js and npm: the machine may have its own (not from a Debian package); install Debian's otherwise.
if ! command -v node >/dev/null 2>&1; then need+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then need+=(npm); fi
MEMLAB_VERSION=2.0.5
# The parser of VS Code's heap snapshot viewer (tests/export.rs loads the .heapsnapshot with it too).
VSCODE_PARSER_VERSION=0.1.0
install_memlab() {
  local dir="$HOME/.cache/memspy/npm"
  [ -f "$dir/node_modules/@memlab/heap-analysis/package.json" ] \
    && grep -q "\"version\": \"$MEMLAB_VERSION\"" "$dir/node_modules/memlab/package.json" 2>/dev/null \
    && grep -q "\"version\": \"$VSCODE_PARSER_VERSION\"" "$dir/node_modules/@vscode/v8-heap-parser/package.json" \
      2>/dev/null && return 0
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"memspy-test-tools","private":true}' >"$dir/package.json"
  echo "installing memlab $MEMLAB_VERSION and @vscode/v8-heap-parser $VSCODE_PARSER_VERSION into $dir" >&2
  (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error "memlab@$MEMLAB_VERSION" \
    "@vscode/v8-heap-parser@$VSCODE_PARSER_VERSION" >/tmp/memspy-npm-memlab.log 2>&1) \
    || { echo "installing memlab failed:" >&2; tail -20 /tmp/memspy-npm-memlab.log >&2; exit 1; }
}
if [ ${#need[@]} -eq 0 ]; then install_memlab; exit 0; fi
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  ours=1
fi
cleanup() { if [ -n "$ours" ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
log=/tmp/memspy-apt-services.log
export DEBIAN_FRONTEND=noninteractive
echo "installing ${need[*]}" >&2
if ! $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >"$log" 2>&1; then
  # The package lists may be missing or stale on a fresh machine.
  $SUDO apt-get update -o Acquire::Retries=3 >>"$log" 2>&1 || true
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >>"$log" 2>&1 \
    || { echo "installing ${need[*]} failed:" >&2; tail -20 "$log" >&2; exit 1; }
fi
# Should a service manager have started it anyway, stop it: the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  $SUDO systemctl stop prometheus || true
fi
install_memlab
