#!/opt/venv/bin/python
"""Container health probe for the spapi-proxy image (slim images have no curl).

Installed in the image as `spapi-proxy-healthcheck`; used by the image's HEALTHCHECK, the
compose services and the Kubernetes exec probes, so none of them needs inline code:

    spapi-proxy-healthcheck                  GET /_proxy/health on the proxy's own port
    spapi-proxy-healthcheck /_proxy/ready    GET another path (200 once credentials can be had)
    spapi-proxy-healthcheck --tcp 9000       only that the port accepts connections (the emulator)

The proxy's port is $SPAPI_PROXY_LISTEN_PORT (8000). Exit 0 when healthy, 1 otherwise, with one
line saying why (that line is what `docker inspect` shows in the health log).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def probe_tcp(port: int) -> str | None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S).close()
    except OSError as error:
        return f"127.0.0.1:{port} refuses connections ({error})"
    return None


def probe_http(path: str) -> str | None:
    port = os.environ.get("SPAPI_PROXY_LISTEN_PORT") or "8000"
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            response.read(4096)
    except urllib.error.HTTPError as error:
        return f"GET {url} -> {error.code}: {error.read(300).decode(errors='replace')}"
    except OSError as error:
        return f"GET {url} failed: {error}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--tcp" and argv[1].isdigit():
        problem = probe_tcp(int(argv[1]))
    elif len(argv) <= 1 and all(arg.startswith("/") for arg in argv):
        problem = probe_http(argv[0] if argv else "/_proxy/health")
    else:
        print("usage: spapi-proxy-healthcheck [/PATH | --tcp PORT]")
        return 1  # not 2: Docker reserves that exit code of a health check
    print(problem or "ok")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
