"""Decode codat-stream envelopes with Confluent's own Python client.

Reads every record of the given topics with confluent-kafka's Consumer and
deserialises each value with its AvroDeserializer, which resolves the
schema id in the Confluent wire format through the Schema Registry. Prints
one JSON line per record: {"topic", "id", "type", "companyId"}. Exits
non-zero if a value does not deserialise or fewer than --expect records
arrive before --timeout seconds.

Used by tests/kafka_schema_registry.rs; scripts/test.sh installs the
packages into a virtual environment.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated")
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"confluent-decode-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    consumer.subscribe(args.topics.split(","))
    seen = 0
    deadline = time.monotonic() + args.timeout
    try:
        while seen < args.expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                continue
            ctx = SerializationContext(msg.topic(), MessageField.VALUE)
            envelope = deserializer(msg.value(), ctx)
            print(
                json.dumps(
                    {
                        "topic": msg.topic(),
                        "id": envelope["id"],
                        "type": envelope["type"],
                        "companyId": envelope["companyId"],
                    }
                ),
                flush=True,
            )
            seen += 1
    finally:
        consumer.close()
    if seen < args.expect:
        print(f"only {seen} of {args.expect} records within {args.timeout}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
