"""Micro-benchmark: µs per Authorization header, SigV4Signer vs botocore's SigV4Auth.

Run as `python benchmarks/sign_micro.py`. botocore is timed the way a proxy would have to use
it (build an AWSRequest, then add_auth), and on its bare canonical_request → signature chain,
which skips AWSRequest construction and header injection, as a lower bound.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.credentials.signing import SigV4Signer, amz_date
from proxy.credentials.types import AwsCredentials
from proxy.forwarding.query import encode_query
from proxy.secret import Secret

ITERATIONS = 20_000
HOST = "sellingpartnerapi-na.amazon.com"
PATH = "/orders/v0/orders/123-1234567-1234567/orderItems"
# Needs the full canonical-URI route (dot-segment removal + quote) instead of the fast path.
ESCAPED_PATH = "/listings/2021-08-01/items/A1SELLER/MY%20SKU%2F1"
QUERY = encode_query("MarketplaceIds=ATVPDKIKX0DER&CreatedAfter=2026-11-01T00:00:00Z")
ACCESS_KEY, SECRET_KEY, TOKEN = (
    "ASIAEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "FQo//tok",
)
DATE = amz_date(time.time())
HEADERS = {
    "host": HOST,
    "x-amz-date": DATE,
    "x-amz-access-token": "Atza|IwEBI" + "x" * 300,
    "x-amz-security-token": TOKEN,
}
BODY_SHA256 = hashlib.sha256(b"").hexdigest()


def ours(path: str = PATH) -> Callable[[], object]:
    signer = SigV4Signer("us-east-1")
    credentials = AwsCredentials(ACCESS_KEY, Secret(SECRET_KEY), Secret(TOKEN))

    def run() -> object:
        return signer.authorization(
            method="GET",
            raw_path=path,
            query=QUERY,
            headers=HEADERS,
            payload_sha256=BODY_SHA256,
            credentials=credentials,
            amz_date=DATE,
        )

    return run


def ours_escaped_path() -> Callable[[], object]:
    return ours(ESCAPED_PATH)


def botocore_add_auth() -> Callable[[], object]:
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, TOKEN), "execute-api", "us-east-1")
    url = f"https://{HOST}{PATH}?{QUERY}"
    headers = {k: v for k, v in HEADERS.items() if k not in ("x-amz-date", "x-amz-security-token")}

    def run() -> object:
        request = AWSRequest("GET", url=url, headers=headers)
        auth.add_auth(request)
        return request.headers["Authorization"]

    return run


def botocore_bare() -> Callable[[], object]:
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, TOKEN), "execute-api", "us-east-1")
    request = AWSRequest("GET", url=f"https://{HOST}{PATH}?{QUERY}", headers=HEADERS)
    request.context["timestamp"] = DATE

    def run() -> object:
        canonical_request = auth.canonical_request(request)
        return auth.signature(auth.string_to_sign(request, canonical_request), request)

    return run


def microseconds_per_call(run: Callable[[], object]) -> float:
    for _ in range(1_000):  # warm caches (the signing key, regexes, quote's safe-map)
        run()
    best = float("inf")
    for _ in range(3):  # best of three damps scheduler noise
        start = time.perf_counter()
        for _ in range(ITERATIONS):
            run()
        best = min(best, time.perf_counter() - start)
    return best / ITERATIONS * 1e6


def main() -> None:
    print(f"{ITERATIONS} iterations, best of 3")
    for name, factory in [
        ("SigV4Signer.authorization", ours),
        ("SigV4Signer.authorization, escaped path", ours_escaped_path),
        ("botocore SigV4Auth.add_auth", botocore_add_auth),
        ("botocore canonical_request+signature", botocore_bare),
    ]:
        print(f"{name:40s} {microseconds_per_call(factory()):7.2f} µs/call")


if __name__ == "__main__":
    main()
