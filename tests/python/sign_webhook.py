"""Signs webhook bodies the way Codat (through Svix) does, with libraries
no one here wrote: `standardwebhooks` (the Standard Webhooks reference
library) or `svix` (Svix's own). Used by tests/receive_*.rs.

Reads JSON lines from stdin, one request each:

    {"library": "standardwebhooks" | "svix", "secrets": ["whsec_..."],
     "id": "msg_1", "timestamp": 1614265330 (optional: now), "body": "..."}

and prints, for each, the request headers as one JSON object per line.
Each secret adds one `v1,` signature to the signature header (Svix lists
several while a secret is rotated). Signed at "now", the library then
verifies what it signed with its own clock before it is printed.
"""

import json
import sys
import time
from datetime import datetime, timezone


def sign(request: dict) -> dict:
    if request["library"] == "standardwebhooks":
        from standardwebhooks.webhooks import Webhook

        prefix = "webhook"
    elif request["library"] == "svix":
        from svix.webhooks import Webhook

        prefix = "svix"
    else:
        raise SystemExit(f"unknown library {request['library']!r}")

    body = request["body"]
    now = request.get("timestamp") is None
    seconds = int(time.time()) if now else int(request["timestamp"])
    at = datetime.fromtimestamp(seconds, tz=timezone.utc)
    signatures = [Webhook(s).sign(msg_id=request["id"], timestamp=at, data=body) for s in request["secrets"]]
    headers = {
        f"{prefix}-id": request["id"],
        f"{prefix}-timestamp": str(seconds),
        f"{prefix}-signature": " ".join(signatures),
    }
    if now:
        Webhook(request["secrets"][0]).verify(body, dict(headers))
    return headers


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(sign(json.loads(line))) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
