"""Reads every record of the given topics with Confluent's Python client and
decodes every header (Message.headers() raised SystemError on a header key
that is not UTF-8). argv: BOOTSTRAP TOPIC:COUNT... Prints "<topic> <records>
<headers>" per topic."""
import sys
import time
import uuid

from confluent_kafka import Consumer


def main():
    want = dict((t, int(n)) for t, n in (a.split(":") for a in sys.argv[2:]))
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": f"read-all-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(list(want))
    seen = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(seen.get(t, [0])[0] < n for t, n in want.items()):
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        n = seen.setdefault(m.topic(), [0, 0])
        n[0] += 1
        n[1] += len(m.headers() or [])
    c.close()
    for t, (records, headers) in sorted(seen.items()):
        print(t, records, headers)


if __name__ == "__main__":
    main()
