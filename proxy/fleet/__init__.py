"""State several proxies share on one Redis: rate-limit buckets and credentials.

Amazon meters each operation per selling partner, application and region, whoever calls; ten
proxies for one seller must spend one quota between them and need one LWA token, not ten.

- :mod:`proxy.fleet.store`: the Redis connection, its bound on every call, and whether it is
  healthy or degraded (the proxy then serves with its own buckets and tokens, or refuses).
- :mod:`proxy.fleet.keys`: the seller's identity (a hash, never the token) and the key layout.
- :mod:`proxy.fleet.buckets`: the token buckets, one Lua script call per request.
- :mod:`proxy.fleet.tokens`: LWA tokens, grantless tokens and RDTs, encrypted, fetched by one
  replica at a time.
- :mod:`proxy.fleet.limiter` and :mod:`proxy.fleet.credentials`: what a profile's forwarder and
  credential store use (the forwarding and credentials packages' protocols), with the fallback
  to the process's own buckets and tokens, or the refusal, when Redis can't answer.
- :mod:`proxy.fleet.runtime`: the process's one Redis client and the above for each profile.
"""
