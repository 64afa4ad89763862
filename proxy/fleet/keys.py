"""Who a key belongs to, and how keys are named.

Amazon meters per selling partner, application, region and operation. The seller and the
application are named by a hash of the refresh token and the client id: equal for every
replica configured with them, and useless to anyone reading Redis (the token never is stored
in the clear, and 80 bits of SHA-256 of a ~400-character secret reveal nothing of it).

Every key of one seller carries the seller's id in braces, Redis Cluster's hash tag, so a
seller's keys share one slot: a token and its lock can be used together, and one seller's
traffic lands on one node while many sellers spread across the cluster.

    <prefix>:{<seller>}:<region>:bucket:<api>:<operation>   token bucket (a hash)
    <prefix>:{<seller>}:lwa                                  the seller's LWA access token
    <prefix>:{<seller>}:grantless:<scope>                    a grantless token
    <prefix>:{<seller>}:<region>:rdt:<request hash>          a restricted data token
    <credential key>:lock                                    who is fetching it right now
"""

from __future__ import annotations

import hashlib

SELLER_ID_HEX = 20  # 80 bits: no two sellers of one fleet collide


def seller_id(client_id: str, refresh_token: str) -> str:
    material = f"{client_id}\0{refresh_token}".encode()
    return hashlib.sha256(material).hexdigest()[:SELLER_ID_HEX]


class FleetKeys:
    """Key names for one seller in one region (one profile of the proxy's config)."""

    def __init__(self, prefix: str, seller: str, region: str) -> None:
        self._seller = f"{prefix}:{{{seller}}}"
        self._regional = f"{self._seller}:{region}"

    def bucket(self, api: str, operation: str) -> str:
        return f"{self._regional}:bucket:{api}:{operation}"

    def lwa_token(self) -> str:
        return f"{self._seller}:lwa"

    def grantless_token(self, scope: str) -> str:
        return f"{self._seller}:grantless:{scope}"

    def rdt(self, method: str, path: str, data_elements: tuple[str, ...]) -> str:
        # The path holds order ids and the like: hashed, so Redis holds no business data.
        request = "\0".join((method, path, *data_elements)).encode()
        return f"{self._regional}:rdt:{hashlib.sha256(request).hexdigest()[:32]}"


def lock_key(credential_key: str) -> str:
    return f"{credential_key}:lock"
