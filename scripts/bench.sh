#!/usr/bin/env bash
# The end-to-end benchmark (benches/pipeline.rs): the connector against a
# plain librdkafka client doing the same Kafka work (examples/plain_forward.rs),
# each in its own process on a fresh Apache Kafka broker (KRaft, one node),
# then the delivery modes there, then both on librdkafka's
# mock cluster (examples/mock_kafka.rs, its own process), then steady-rate
# latency. Prints a table and writes target/bench/pipeline.json. Options
# pass through:
#   ./scripts/bench.sh --events 200000 --partitions 6 --rates 5000 --rate-secs 20
# and a producer-setting sweep only (each setting on the floor and the connector):
#   ./scripts/bench.sh --skip-modes --skip-mock --rates "" --producer-sweep "linger.ms=100;compression.type=zstd"
set -euo pipefail
cd "$(dirname "$0")/.."

# The Apache Kafka broker the tests use (scripts/test.sh installs its jars).
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
if [ ! -f "target/kafka/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$PWD/target/kafka/libs"
fi
# Measured as shipped: the dist profile (fat LTO, one codegen unit), whose
# binary is target/dist/codat-stream. cargo bench does not build examples;
# the bench finds them next to its own executable, in the profile's
# directory (<target>/dist/examples).
cargo build --locked --profile dist --example mock_kafka --example plain_forward
exec cargo bench --locked --profile dist --bench pipeline -- "$@"
