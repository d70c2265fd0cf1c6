#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the Debian interpreters the tests run against
# (3.9, 3.11, 3.13, 3.14, 3.15 and their debug builds; pyenv's builds come with the machine image), builds
# the ones no package serves (scripts/build-pythons.sh), the
# venvs with numpy and pandas the native-heap tests use, Debian's prometheus (tests/serve.rs),
# checks formatting and lints, builds memspy and runs every test. The tests print which interpreters they
# covered; a test whose prerequisite is missing prints "SKIPPED: <test>: <reason>" (and fails if CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-pythons.sh
# CPython builds no package source serves (free-threaded 3.13t/3.14t/3.15t, the GIL 3.14.4), from the
# upstream tarballs in ../shared/pythons, cached in ~/.cache/memspy/pythons (built once per machine).
./scripts/build-pythons.sh
# prometheus, which tests/serve.rs starts itself on loopback (the packaged service is never started).
./scripts/install-services.sh
# numpy and pandas from PyPI, one venv per interpreter, cached outside the checkout (tests/native_heap.rs).
./scripts/venvs.sh
# Formatting and lints first: either failing fails the run, before any test.
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check) # the fuzz crate is outside the workspace
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast -- --nocapture 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: the sums of every test binary's "test result" line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
