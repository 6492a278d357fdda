#!/usr/bin/env bash
# The end-to-end benchmark (benches/pipeline.rs): a backlog of webhooks
# through a real broker (tansu) with and without the connector, steady-rate
# latency, and the connector on librdkafka's mock cluster. Prints a table
# and writes target/bench/pipeline.json. Options pass through:
#   ./scripts/bench.sh --events 1000000 --partitions 4 --rates 5000,20000 --rate-secs 20
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0
export PATH="$HOME/.cargo/bin:$PATH"
if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "== installing tansu $TANSU_VERSION (a few minutes, once per machine)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi
exec cargo bench --locked --bench pipeline -- "$@"
