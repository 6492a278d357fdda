"""A downstream service's consumer of codat-stream's connection.failed topic,
in Python: confluent-kafka (librdkafka) and fastavro.

It decodes both framings codat-stream writes:

- the Confluent wire format (00, 4-byte schema id, datum), with
  confluent-kafka's own AvroDeserializer against the schema registry;
- Avro single-object encoding (C3 01, 8-byte CRC-64-AVRO fingerprint,
  datum), with fastavro: the writer's schema is looked up by fingerprint
  among the released schemas (schemas/released/*.avsc, deployed with the
  service).

Either way the datum is resolved into the reader schema, the envelope
version this service was built with, so older and newer writers decode
alike. One line per event; offsets are committed after each batch is
handled (at-least-once: de-duplicate on id).

    pip install confluent-kafka[avro] fastavro
    python consumer.py --bootstrap broker:9092 --topic codat.connection.failed
"""

import argparse
import datetime
import io
import json
import os
import pathlib
import sys
import time

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

SINGLE_OBJECT = b"\xc3\x01"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class Decoder:
    def __init__(self, reader_text, released_dir, registry_url):
        self.reader = parse_schema(json.loads(reader_text))
        self.writers = {}
        for path in sorted(pathlib.Path(released_dir).glob("*.avsc")):
            schema = parse_schema(json.loads(path.read_text()))
            fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
            self.writers[fp] = schema
        if not self.writers:
            raise SystemExit(f"no released schemas in {released_dir}")
        self.confluent = None
        if registry_url:
            client = SchemaRegistryClient({"url": registry_url})
            # schema_str is the reader schema: writers are resolved into it.
            self.confluent = AvroDeserializer(client, schema_str=reader_text)

    def decode(self, msg):
        value = msg.value()
        if value[:2] == SINGLE_OBJECT and len(value) >= 10:
            fp = value[2:10].hex()
            writer = self.writers.get(fp)
            if writer is None:
                raise ValueError(f"unknown writer schema fingerprint {fp}: deploy the newer schemas/released")
            return schemaless_reader(io.BytesIO(value[10:]), writer, self.reader)
        if value[:1] == b"\x00":
            if self.confluent is None:
                raise ValueError("a Confluent-framed record, and no --registry given")
            ctx = SerializationContext(msg.topic(), MessageField.VALUE)
            return self.confluent(value, ctx)
        raise ValueError("neither single-object nor Confluent framing")


def millis(t):
    """fastavro gives timestamp-millis as an aware datetime."""
    if isinstance(t, datetime.datetime):
        return (t - EPOCH) // datetime.timedelta(milliseconds=1)
    return t


def line(e):
    return "company={} connection={} time={} id={}".format(
        e.get("companyId") or "-", e.get("connectionId") or "-", millis(e["time"]), e["id"]
    )


def main():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default=env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    p.add_argument("--topic", default=env("CODAT_TOPIC", "codat.connection.failed"))
    p.add_argument("--group", default=env("KAFKA_GROUP_ID", "connection-failed-python"))
    p.add_argument("--reader-schema", default=env("READER_SCHEMA", "schemas/envelope.avsc"))
    p.add_argument("--schemas", default=env("RELEASED_SCHEMAS", "schemas/released"))
    p.add_argument("--registry", default=env("SCHEMA_REGISTRY_URL"))
    p.add_argument("--max", type=int, default=0, help="exit after this many events (0: run on)")
    p.add_argument("--timeout-ms", type=int, default=0, help="fail if --max events take longer")
    args = p.parse_args()

    decoder = Decoder(pathlib.Path(args.reader_schema).read_text(), args.schemas, args.registry)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([args.topic])
    deadline = time.monotonic() + args.timeout_ms / 1000 if args.timeout_ms else None
    handled = 0
    try:
        while args.max == 0 or handled < args.max:
            if deadline is not None and time.monotonic() > deadline:
                print(f"{handled} of {args.max} events within {args.timeout_ms} ms", file=sys.stderr)
                return 1
            batch = consumer.consume(num_messages=100, timeout=0.2)
            for msg in batch:
                if msg.error():
                    raise KafkaException(msg.error())
                try:
                    print(line(decoder.decode(msg)), flush=True)
                except Exception as e:  # nothing of this batch is committed
                    print(f"{msg.topic()}/{msg.partition()}@{msg.offset()}: {e!r}", file=sys.stderr)
                    return 1
                handled += 1
            if batch:
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
