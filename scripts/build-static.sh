#!/usr/bin/env bash
# A statically linked memspy (glibc linked in with crt-static): no shared libraries and no dynamic
# loader, so the one file runs in any x86_64 Linux container, chroot or debug image, whatever libc (or
# none) it has.
#
# Usage: scripts/build-static.sh [--profile PROFILE]     (default: release)
#
# Builds under target/x86_64-unknown-linux-gnu/ (apart from the ordinary build, which has other
# flags; $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/ when that is set), checks that the result needs
# no shared library, and prints its path as the last line of stdout. The binary is a static PIE (the
# kernel still randomizes where it is loaded): ldd calls it "statically linked".
# Needs glibc's static archives (libc.a: Debian's libc6-dev, Fedora's glibc-static).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
    --profile=*) profile=${1#--profile=}; shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-static.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

target=x86_64-unknown-linux-gnu
libc_a=$(${CC:-cc} -print-file-name=libc.a 2>/dev/null || true)
if [ -z "$libc_a" ] || [ ! -f "$libc_a" ]; then
  echo "build-static.sh: glibc's static libc.a was not found (install libc6-dev or glibc-static)" >&2
  exit 1
fi

# With --target, RUSTFLAGS reach memspy and its dependencies but not the build scripts and proc-macros,
# which run on the host as ordinary dynamic programs (a proc-macro cannot be linked statically).
# Linked with GNU ld, glibc warns that getaddrinfo and getpwuid_r need its shared NSS modules at run
# time when linked statically: both come from Rust's std (name lookup of ToSocketAddrs, home_dir's
# fallback), memspy calls neither (rust-lld, the default linker, prints no such warning).
# The debug info goes (the release profile keeps line tables for profiling: 40 MB instead of 5.6);
# the symbols stay, for perf and gdb.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --profile "$profile" --target "$target" --bin memspy --config "profile.$profile.strip=\"debuginfo\"" >&2

case $profile in
  dev | test) dir=debug ;;
  bench) dir=release ;;
  *) dir=$profile ;;
esac
bin=${CARGO_TARGET_DIR:-target}/$target/$dir/memspy

# A static binary has no program interpreter (PT_INTERP) and no DT_NEEDED entries.
if ldd_out=$(ldd "$bin" 2>&1) && ! grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out"; then
  echo "build-static.sh: $bin still needs shared libraries:" >&2
  echo "$ldd_out" >&2
  exit 1
fi
echo "$bin"
