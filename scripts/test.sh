#!/usr/bin/env bash
# Runs every check and test of codat-stream, installing what they need first.
# This is README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION=0.6.0

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
# openssl's s_server stands in for an https schema registry with a private CA.
command -v openssl >/dev/null || need_apt+=(openssl)
# A real Prometheus and promtool check the shipped rules and dashboard.
command -v prometheus >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]} (librdkafka's build needs; Prometheus for the observability tests)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# The real-broker tests start tansu (a Kafka-compatible broker) themselves.
export PATH="$HOME/.cargo/bin:$PATH"
if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "== installing tansu $TANSU_VERSION (a few minutes, once per machine)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi

# Confluent's own Python client decodes the connector's records in a test;
# fastavro checks the single-object fingerprints and decodes by them;
# standardwebhooks and svix sign the webhooks the receive tests send.
PY_VENV=target/python-venv
if ! "$PY_VENV/bin/python" -c "import confluent_kafka.schema_registry.avro, fastavro, standardwebhooks, svix.webhooks" 2>/dev/null; then
    echo "== installing confluent-kafka, fastavro, standardwebhooks and svix into $PY_VENV"
    rm -rf "$PY_VENV"
    python3 -m venv "$PY_VENV"
    "$PY_VENV/bin/pip" install -q -r tests/python/requirements.txt
fi

echo "== format"
cargo fmt --all -- --check
echo "== lint"
cargo clippy --all-targets --locked -- -D warnings
echo "== tests"
cargo test --locked
