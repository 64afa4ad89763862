"""Request ids: the one id a user quotes for a call, taken from the client's `X-Request-Id` or
made by the proxy, then logged, forwarded upstream and echoed on the answer."""

from __future__ import annotations

import random

from multidict import CIMultiDictProxy

REQUEST_ID_HEADER = "X-Request-Id"
# Longer than the ids tracing systems make (a W3C traceparent is 55 characters, a UUID 36), short
# enough that a client can't grow every log line by kilobytes.
MAX_REQUEST_ID_CHARS = 200


def request_id_of(headers: CIMultiDictProxy[str]) -> str:
    """The client's X-Request-Id when it sent exactly one that is short visible ASCII (nothing in
    it could forge or break a log line or a header), else a new one."""
    sent = headers.getall(REQUEST_ID_HEADER, None)  # one C lookup; usually None
    if sent is not None and len(sent) == 1:
        value = sent[0]
        if (
            0 < len(value) <= MAX_REQUEST_ID_CHARS
            and value.isascii()
            and value.isprintable()
            and " " not in value
        ):
            return value
    return new_request_id()


def new_request_id() -> str:
    """16 random hex digits. Not a secret, only unique in practice: the random module's generator
    costs a tenth of os.urandom's system call and is reseeded in each forked worker."""
    return f"{random.getrandbits(64):016x}"
