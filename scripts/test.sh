#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the Debian interpreters the tests run against
# (3.9, 3.11, 3.13, 3.14, 3.15 and their debug builds; pyenv's builds come with the machine image),
# builds memspy and runs every test. Prints which interpreters were covered.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-pythons.sh
cargo build --workspace --all-targets
cargo test --workspace -- --nocapture
