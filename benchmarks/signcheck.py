"""Proof that a proxy signed what reached the upstream: botocore recomputes the signature.

The upstream's echo route reports the request line and the signing headers it received; the
signature in `Authorization` must equal botocore's over exactly those, with the expected key.
"""

from __future__ import annotations

import re

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from benchmarks.upstream import ECHOED_HEADERS

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def parse_echo(text: str) -> dict[str, str]:
    echo: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition("\t")
        echo[name] = value
    return echo


def signature_problem(
    echo: dict[str, str], access_key_id: str, secret_access_key: str, access_token: str
) -> str | None:
    """None when the echoed request carries a valid SigV4 signature by `access_key_id`."""
    if echo.get("x-amz-access-token") != access_token:
        return f"x-amz-access-token was {echo.get('x-amz-access-token')!r}"
    match = AUTHORIZATION.fullmatch(echo.get("authorization", ""))
    if match is None:
        return f"no SigV4 Authorization header (got {echo.get('authorization', '')[:60]!r})"
    if (match["key"], match["region"], match["service"]) != (
        access_key_id,
        "us-east-1",
        "execute-api",
    ):
        return f"signed for {match['key']}/{match['region']}/{match['service']}"
    names = match["signed"].split(";")
    unseen = [name for name in names if name not in ECHOED_HEADERS or not echo.get(name)]
    if unseen:
        return f"signed headers the echo can't show: {', '.join(unseen)}"
    request = AWSRequest(
        method=echo["method"],
        url=f"http://{echo['host']}{echo['uri']}",
        headers={name: echo[name] for name in names},
    )
    request.context["timestamp"] = echo["x-amz-date"]
    auth = SigV4Auth(
        Credentials(access_key_id, secret_access_key), match["service"], match["region"]
    )
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    if expected != match["signature"]:
        return "the signature does not match botocore's over the bytes the upstream received"
    return None
