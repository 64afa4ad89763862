"""Forwarding one request to SP-API: everything between the front door and the connection pool.

- forward.py: the request's one path (prepare, wait for quota, snapshot credentials, send,
  replay once on a rejected token, diagnose, hand the answer to the server's writer).
- upstream.py: signs a snapshot's request and sends it over the pool.
- tokens.py: which token a request goes with (LWA, grantless, an RDT fetched or brought), and
  the snapshot of everything an attempt is sent with, taken after its wait for quota.
- headers.py, query.py: which headers cross, and the canonical query sent and signed.
- operations.py (+ the generated operations_table.py): which operation a path is, its usage plan,
  whether it needs an RDT or a grantless token.
- ratelimit.py: this process's token buckets mirroring SP-API's.
- diagnosis.py: plain-words hints for Amazon's confusing 400/401/403 answers.
"""
