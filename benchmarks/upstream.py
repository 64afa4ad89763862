"""The benchmark's upstream: a fixed ~2 KB JSON answer, a fake LWA and a header echo.

nginx serves it when it is installed (the README's figures use it); otherwise
`python -m benchmarks.upstream --port P` runs a single-threaded raw-socket HTTP/1.1 keep-alive
server with the same three routes:
- `POST /auth/o2/token`: an LWA token answer (the proxy's `lwa.token_url`);
- `GET /_bench/echo`: the request line and signing headers as `name<TAB>value` lines, so the
  benchmark can recompute the signature it saw;
- anything else: the same SP-API-shaped JSON body, `x-amzn-RequestId` included.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
from pathlib import Path

ACCESS_TOKEN = "Atza|bench-access-token"
TOKEN_PATH = "/auth/o2/token"
ECHO_PATH = "/_bench/echo"
REQUEST_ID = "bench-0000-1111-2222"
# Headers the echo route reports; a signature over any other header can't be checked.
ECHOED_HEADERS = (
    "host",
    "x-amz-date",
    "x-amz-access-token",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "authorization",
    "user-agent",
    "accept",
    "accept-encoding",
    "content-type",
)
TOKEN_BODY = json.dumps(
    {"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 3600},
    separators=(",", ":"),
).encode()


def orders_body(size: int = 2048) -> bytes:
    """A getOrders-shaped answer of about `size` bytes (deterministic)."""
    orders: list[dict[str, object]] = []
    document: dict[str, object] = {"payload": {"Orders": orders, "CreatedBefore": "2026-11-01"}}
    while len(json.dumps(document)) < size - 200:
        orders.append(
            {
                "AmazonOrderId": f"902-{len(orders):07d}-1234567",
                "PurchaseDate": "2026-10-31T08:00:00Z",
                "OrderStatus": "Unshipped",
                "FulfillmentChannel": "MFN",
                "SalesChannel": "Amazon.com",
                "OrderTotal": {"CurrencyCode": "USD", "Amount": "25.99"},
                "NumberOfItemsUnshipped": 1,
                "MarketplaceId": "ATVPDKIKX0DER",
                "IsPrime": False,
            }
        )
    return json.dumps(document).encode()


BODY = orders_body()


def nginx_config(directory: Path, port: int) -> str:
    """A one-process nginx (no master, no daemon) writing only inside `directory`."""
    body = BODY.decode()
    assert not set(body) & set("'$\\"), "the body must survive an nginx quoted string"
    token = TOKEN_BODY.decode()
    echo = "".join(f"{name}\\t${'http_' + name.replace('-', '_')}\\n" for name in ECHOED_HEADERS)
    temp = "\n".join(
        f"  {kind}_temp_path {directory}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
master_process off;
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = {TOKEN_PATH} {{ default_type application/json; return 200 '{token}'; }}
    location = {ECHO_PATH} {{
      default_type text/plain;
      return 200 "method\\t$request_method\\nuri\\t$request_uri\\n{echo}";
    }}
    location / {{
      default_type application/json;
      add_header x-amzn-RequestId {REQUEST_ID};
      return 200 '{body}';
    }}
  }}
}}
"""


# --- the raw-socket fallback ------------------------------------------------------------------


def response(status: str, content_type: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nServer: bench-upstream\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


BODY_RESPONSE = response("200 OK", "application/json", BODY, f"x-amzn-RequestId: {REQUEST_ID}\r\n")
TOKEN_RESPONSE = response("200 OK", "application/json", TOKEN_BODY)


def answer(head: bytes) -> bytes:
    """The response to one request head (request line + headers, without the blank line)."""
    request_line, _, rest = head.partition(b"\r\n")
    method, target, _ = request_line.decode("latin-1").split(" ", 2)
    path = target.partition("?")[0]
    if path == TOKEN_PATH:
        return TOKEN_RESPONSE
    if path != ECHO_PATH:
        return BODY_RESPONSE
    headers = parse_headers(rest)
    lines = [f"method\t{method}", f"uri\t{target}"]
    lines += [f"{name}\t{headers.get(name, '')}" for name in ECHOED_HEADERS]
    return response("200 OK", "text/plain", ("\n".join(lines) + "\n").encode())


def parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def take_request(buffer: bytearray) -> bytes | None:
    """Remove one complete request from `buffer` and return its head, or None if incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end])
    length = int(parse_headers(head).get("content-length", "0") or 0)
    if len(buffer) < end + 4 + length:
        return None
    del buffer[: end + 4 + length]
    return head


def serve(port: int) -> None:
    """Serve forever on 127.0.0.1:port; one thread, pipelining-safe, keep-alive."""
    selector = selectors.DefaultSelector()
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytearray] = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                client, _ = listener.accept()
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.setblocking(True)  # only read when ready; sendall of ~2 KB won't stall
                selector.register(client, selectors.EVENT_READ)
                buffers[client] = bytearray()
                continue
            serve_readable(sock, buffers, selector)


def serve_readable(
    sock: socket.socket, buffers: dict[socket.socket, bytearray], selector: selectors.BaseSelector
) -> None:
    try:
        data = sock.recv(65536)
    except OSError:
        data = b""
    if not data:
        selector.unregister(sock)
        del buffers[sock]
        sock.close()
        return
    buffer = buffers[sock]
    buffer += data
    answers = []
    while (head := take_request(buffer)) is not None:
        answers.append(answer(head))
    if answers:
        sock.sendall(b"".join(answers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
