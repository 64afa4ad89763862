"""The benchmark's reference: a plain aiohttp proxy that signs each request with botocore.

What a competent developer writes in an afternoon: an aiohttp server, one shared ClientSession,
botocore's `SigV4Auth.add_auth` on every request (execute-api, us-east-1, static keys, a fixed
`x-amz-access-token`), the answer streamed back, aiohttp's access log at INFO (one line a
request, like the proxy's). Run: `python -m benchmarks.reference_proxy --port P --upstream URL`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

ACCESS_KEY_ID = "AKIDBENCHREFERENCE01"
SECRET_ACCESS_KEY = "bench/reference/secret/key/0000000000000"
ACCESS_TOKEN = "Atza|bench-access-token"
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
    | {"upgrade"}
)
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length"}
UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
SIGNER = web.AppKey("signer", SigV4Auth)


async def forward(request: web.Request) -> web.StreamResponse:
    url = request.app[UPSTREAM] + request.raw_path
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
    headers["x-amz-access-token"] = ACCESS_TOKEN
    signed = AWSRequest(method=request.method, url=url, headers=headers, data=body)
    request.app[SIGNER].add_auth(signed)
    async with request.app[SESSION].request(
        request.method,
        URL(url, encoded=True),
        headers=dict(signed.headers.items()),
        data=body or None,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
        )
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def client_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        app[SESSION] = session
        yield


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    credentials = Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    app[SIGNER] = SigV4Auth(credentials, "execute-api", "us-east-1")
    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://host:port")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(create_app(args.upstream), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
