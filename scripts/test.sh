#!/usr/bin/env bash
# Runs every check and test of codat-stream, installing what they need first.
# This is README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== format"
cargo fmt --all -- --check
echo "== lint"
cargo clippy --all-targets --locked -- -D warnings
echo "== tests"
cargo test --locked
