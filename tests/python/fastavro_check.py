"""Check codat-stream's Avro output with fastavro, a library no one here wrote.

1. Prints fastavro's CRC-64-AVRO fingerprint of every schema file in
   --schemas (the spec's Parsing Canonical Form, as Java and schema stores
   compute it).
2. Decodes every single-object-encoded record in --records (JSON lines,
   {"name": ..., "hex": ...}): reads the C3 01 marker and the 8-byte
   fingerprint, looks the writer's schema up among those files by
   fingerprint, and decodes the datum with fastavro's schemaless_reader.

Prints one JSON object: {"fingerprints": {file: hex}, "records": [{"name",
"schema", "envelope"}]}; a record whose fingerprint matches no file, or
whose datum does not decode (or leaves bytes over), is an error (exit 1).

Used by tests/fastavro_interop.rs; scripts/test.sh installs fastavro into
target/python-venv from tests/python/requirements.txt.
"""

import argparse
import datetime
import io
import json
import pathlib
import sys

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

MARKER = b"\xc3\x01"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def as_json(value):
    """Logical timestamps come back as datetimes: print epoch milliseconds."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(milliseconds=1)
    raise TypeError(f"unexpected {type(value)}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schemas", required=True)
    parser.add_argument("--records", required=True)
    args = parser.parse_args()

    by_fingerprint = {}
    fingerprints = {}
    for path in sorted(pathlib.Path(args.schemas).glob("*.avsc")):
        schema = parse_schema(json.loads(path.read_text()))
        fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
        fingerprints[path.name] = fp
        by_fingerprint[fp] = (path.name, schema)

    records = []
    for line in pathlib.Path(args.records).read_text().splitlines():
        item = json.loads(line)
        value = bytes.fromhex(item["hex"])
        if value[:2] != MARKER:
            print(f"{item['name']}: no single-object marker", file=sys.stderr)
            return 1
        fp = value[2:10].hex()
        if fp not in by_fingerprint:
            print(f"{item['name']}: fingerprint {fp} is no schema file", file=sys.stderr)
            return 1
        name, schema = by_fingerprint[fp]
        datum = io.BytesIO(value[10:])
        envelope = schemaless_reader(datum, schema, None)
        left = len(value) - 10 - datum.tell()
        if left:
            print(f"{item['name']}: {left} bytes left over", file=sys.stderr)
            return 1
        records.append({"name": item["name"], "schema": name, "envelope": envelope})

    json.dump({"fingerprints": fingerprints, "records": records}, sys.stdout, default=as_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
