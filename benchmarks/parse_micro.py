"""Micro-benchmark: µs to take in a typical 2 KB SP-API answer on an upstream connection.

Run as `python -m benchmarks.parse_micro [--baseline REF]`. Times `data_received` with the whole
answer (head parsed, headers built, the caller woken, the body buffered) on a pooled connection
of the current client; with `--baseline REF`, also on the client of an earlier commit
(`proxy/httpclient.py` there, for the hand-written parser).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ITERATIONS = 20_000
BODY = json.dumps(
    {
        "payload": {
            "Orders": [
                {
                    "AmazonOrderId": f"902-3159896-{n:07d}",
                    "PurchaseDate": "2026-11-01T08:00:00Z",
                    "OrderStatus": "Unshipped",
                    "OrderTotal": {"CurrencyCode": "USD", "Amount": "25.00"},
                    "MarketplaceId": "ATVPDKIKX0DER",
                }
                for n in range(8)
            ]
        }
    }
).encode()
HEAD = (
    "HTTP/1.1 200 OK\r\n"
    "Date: Thu, 03 Dec 2026 18:00:00 GMT\r\n"
    "Content-Type: application/json\r\n"
    "{framing}"
    "Connection: keep-alive\r\n"
    "x-amzn-RequestId: 3f1a9c52-6a4e-4a39-9d2b-8b2f4f0c1e77\r\n"
    "x-amzn-RateLimit-Limit: 0.0167\r\n"
    "x-amz-apigw-id: Pq2XEFbmoAMF8Bw=\r\n"
    "X-Amzn-Trace-Id: Root=1-6570c4a0-2f1f6a0b7d1e0c3b5a7e9d11\r\n"
    "x-amz-date: 20261203T180000Z\r\n"
    "Vary: accept-encoding,Content-Type,Accept-Encoding,Origin\r\n"
    "\r\n"
)
LENGTH_ANSWER = HEAD.format(framing=f"Content-Length: {len(BODY)}\r\n").encode() + BODY
CHUNKED_ANSWER = (
    HEAD.format(framing="Transfer-Encoding: chunked\r\n").encode()
    + b"".join(
        b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (BODY[:700], BODY[700:1400], BODY[1400:])
    )
    + b"0\r\n\r\n"
)


class Transport:
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    abort = close


def client_at(ref: str) -> ModuleType:
    """The hand-written client of an earlier commit, loaded from its source."""
    source = subprocess.run(
        ["git", "show", f"{ref}:proxy/httpclient.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_httpclient.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_httpclient", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def microseconds(client: ModuleType, make_connection: Any, answer: bytes) -> float:
    """Median µs of `data_received(answer)` over ITERATIONS exchanges on one connection."""
    pool = client.UpstreamPool("http://127.0.0.1:9")
    conn = make_connection(pool)
    conn.connection_made(Transport())
    head = client.request_head("GET", "/orders/v0/orders", [("Host", "h")])
    timings = []
    for _ in range(ITERATIONS):
        sending = asyncio.ensure_future(conn.send(head, None, False, True))
        await asyncio.sleep(0)
        started = time.perf_counter()
        conn.data_received(answer)
        timings.append(time.perf_counter() - started)
        response = await sending
        assert len(await response.read()) == len(BODY)
        response.release()
        conn = pool._pop_idle()  # the one connection, reused
    await pool.close()
    return statistics.median(timings) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a commit whose proxy/httpclient.py to time too")
    options = parser.parse_args()
    import proxy.http as current
    from proxy.http.connection import Connection

    subjects: list[tuple[str, ModuleType, Any]] = [("proxy/http (llhttp)", current, Connection)]
    if options.baseline:
        old = client_at(options.baseline)
        subjects.append((f"{options.baseline}:proxy/httpclient.py", old, old._Connection))
    print(f"a {len(LENGTH_ANSWER)}-byte answer, median of {ITERATIONS:,} (µs)")
    for name, client, make in subjects:
        length = await microseconds(client, make, LENGTH_ANSWER)
        chunked = await microseconds(client, make, CHUNKED_ANSWER)
        print(f"  {name:40} Content-Length {length:5.2f}   chunked {chunked:5.2f}")


if __name__ == "__main__":
    asyncio.run(main())
