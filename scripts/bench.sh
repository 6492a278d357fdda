#!/usr/bin/env bash
# The end-to-end benchmark (benches/pipeline.rs): the connector against a
# plain librdkafka client doing the same Kafka work (examples/plain_forward.rs),
# each in its own process on a fresh tansu broker, then both on librdkafka's
# mock cluster (examples/mock_kafka.rs, its own process), then steady-rate
# latency. Prints a table and writes target/bench/pipeline.json. Options
# pass through:
#   ./scripts/bench.sh --events 200000 --partitions 6 --rates 5000 --rate-secs 20
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0
export PATH="$HOME/.cargo/bin:$PATH"
if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "== installing tansu $TANSU_VERSION (a few minutes, once per machine)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi
# cargo bench does not build examples; the bench finds them next to its own
# executable, in the release profile's directory (<target>/release/examples).
cargo build --locked --release --example mock_kafka --example plain_forward
exec cargo bench --locked --bench pipeline -- "$@"
