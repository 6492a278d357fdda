#!/usr/bin/env bash
# Runs every check and test of codat-stream, installing what they need first.
# This is README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_apt+=(zlib1g-dev)
# openssl's s_server stands in for an https schema registry with a private CA.
command -v openssl >/dev/null || need_apt+=(openssl)
# A real Prometheus and promtool check the shipped rules and dashboard.
command -v prometheus >/dev/null || need_apt+=(prometheus)
# Apache Kafka, the broker of the integration tests, runs on the JVM; Maven
# fetches its jars.
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
# The downstream consumer examples (tests/downstream_consumers.rs) are built
# with Maven and Go; the AsyncAPI document is checked by Node's parser.
# The Java consumer example is compiled: a JDK, not only a JRE.
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)
# Go's official tarball installs into /usr/local/go, often not on PATH.
[ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || need_apt+=(golang-go)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]} (librdkafka's build needs; Prometheus for the observability tests; JDK, Go and Node for the consumer examples and the AsyncAPI check)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# The integration tests start Apache Kafka themselves (tests/support/broker.rs)
# from the jars of the version scripts/kafka/pom.xml pins, fetched once.
KAFKA_LIBS=target/kafka/libs
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
if [ ! -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
    echo "== installing Apache Kafka $KAFKA_VERSION into $KAFKA_LIBS (Maven, once per machine)"
    rm -rf "$KAFKA_LIBS"
    mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$PWD/$KAFKA_LIBS"
fi
# Each test broker's data and log; a failing test's are kept until the next run.
rm -rf target/kafka-runs

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

# The consumer examples: the Java ones' jars (kafka-clients, kafka-streams,
# avro and Maven's compiler plugin) fetched by one online build, after which the
# test builds offline; the Go one's modules from its go.sum. Go must be at
# least its go.mod's version: a Go from 1.21 on fetches that toolchain
# itself (GOTOOLCHAIN=auto); Debian 12's golang-go (1.19) cannot.
CONSUMERS=target/consumers
if ! cmp -s examples/consumers/java/pom.xml "$CONSUMERS/java-fetched.pom"; then
    echo "== fetching the Java consumer examples' jars (Maven, once per pom)"
    mvn -q -B -f examples/consumers/java/pom.xml compile -Dbuild.dir="$PWD/$CONSUMERS/java"
    cp examples/consumers/java/pom.xml "$CONSUMERS/java-fetched.pom"
fi
export GOTOOLCHAIN=auto
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ "${go_minor:-0}" -lt 21 ]; then
    echo "Go $(go env GOVERSION) is too old for examples/consumers/go (needs 1.21+ to fetch its toolchain): install Go from https://go.dev/dl/" >&2
    exit 1
fi
(cd examples/consumers/go && go mod download)

# The official AsyncAPI parser, pinned by tests/node/package-lock.json.
ASYNCAPI_NODE=target/asyncapi-node
if ! cmp -s tests/node/package-lock.json "$ASYNCAPI_NODE/package-lock.json"; then
    echo "== installing @asyncapi/parser into $ASYNCAPI_NODE (npm, once per lock)"
    rm -rf "$ASYNCAPI_NODE" && mkdir -p "$ASYNCAPI_NODE"
    cp tests/node/package.json tests/node/package-lock.json "$ASYNCAPI_NODE/"
    npm ci --prefix "$ASYNCAPI_NODE" --no-audit --no-fund --silent
fi

echo "== format"
cargo fmt --all -- --check
echo "== lint"
cargo clippy --all-targets --locked -- -D warnings
echo "== tests"
cargo test --locked
