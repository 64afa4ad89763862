"""Which forward proxy, if any, a connection to a given URL goes through.

The choice follows curl: `https_proxy` / `HTTPS_PROXY` for https URLs, `http_proxy` /
`HTTP_PROXY` for http ones (the lowercase name wins when both are set), and `no_proxy` /
`NO_PROXY` lists hosts reached directly. A configured proxy replaces the environment's
(`configured`: None means "the environment", "" means "no proxy at all"); NO_PROXY applies to
it too, as it does to curl's `--proxy`. The choice is made once per origin (a pool, a session),
never per request.

A proxy URL may hold `user:password@`: the password is a secret, so nothing here puts the URL
in a message; `EgressProxy.address` (host:port) is what errors and logs may show.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PROXY_PORT = 80  # curl's default for an http:// proxy without a port
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY")


class EgressProxyInvalid(ValueError):
    """A proxy URL that can't be used; the message never quotes the URL (it may hold a password)."""


@dataclass(frozen=True)
class EgressProxy:
    """An HTTP forward proxy: where it listens and the Proxy-Authorization its URL implies."""

    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def address(self) -> str:
        """host:port, the only part of a proxy that goes into messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """http://host:port without credentials (aiohttp and botocore are given those apart)."""
        return f"http://{self.address}"

    @property
    def url_with_credentials(self) -> str:
        if not self.username and not self.password:
            return self.url
        user = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        return f"http://{user}@{self.address}"

    @property
    def authorization(self) -> str | None:
        """The Proxy-Authorization value (Basic), or None when the URL names no user."""
        if not self.username and not self.password:
            return None
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def parse_proxy_url(text: str) -> EgressProxy:
    """An `http://[user:password@]host[:port]` proxy; a bare `host:port` counts as http://, as
    curl and requests take it. https:// (TLS to the proxy itself) and SOCKS are refused."""
    text = text.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise EgressProxyInvalid("is not a URL with a valid host and port") from None
    if parts.scheme.lower() != "http":
        raise EgressProxyInvalid(
            f"has the scheme {parts.scheme.lower()}://; only http:// forward proxies are "
            "supported (HTTPS upstreams still get TLS end to end, through a CONNECT tunnel)"
        )
    if not parts.hostname:
        raise EgressProxyInvalid("names no host (expected http://[user:password@]host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EgressProxyInvalid("must be http://[user:password@]host[:port], nothing after")
    return EgressProxy(
        parts.hostname,
        port or DEFAULT_PROXY_PORT,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
    )


def environment_proxy(scheme: str, environ: Mapping[str, str]) -> str | None:
    """The environment's proxy URL for `scheme` (http or https), lowercase name first."""
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """curl's NO_PROXY: `*` for every host; otherwise entries separated by commas (or spaces),
    each a name matching itself and its subdomains (a leading dot changes nothing), an IP
    address, or a CIDR range; `entry:port` only matches that port."""
    host = host.lower().strip("[]").rstrip(".")
    address = _ip(host)
    for raw in no_proxy.replace(",", " ").split():
        entry = raw.lower()
        if entry == "*":
            return True
        entry, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in entry:
            if address is not None and _in_network(address, entry):
                return True
            continue
        entry_address = _ip(entry)
        if entry_address is not None or address is not None:
            if entry_address is not None and entry_address == address:
                return True
            continue
        entry = entry.lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith(f".{entry}")):
            return True
    return False


def egress_proxy_for(
    url: str, configured: str | None, environ: Mapping[str, str]
) -> EgressProxy | None:
    """The proxy a connection to `url` goes through, or None for a direct connection.

    Raises EgressProxyInvalid for a proxy URL that can't be used (naming where it came from).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if configured is None:
        chosen = environment_proxy(scheme, environ)
        origin = f"{scheme.upper()}_PROXY"
    else:
        chosen = configured or None
        origin = "upstream.egress_proxy"
    if chosen is None or not parts.hostname:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    port = parts.port or (443 if scheme == "https" else 80)
    if no_proxy and bypasses_proxy(parts.hostname, port, no_proxy):
        return None
    try:
        return parse_proxy_url(chosen)
    except EgressProxyInvalid as error:
        raise EgressProxyInvalid(f"{origin} {error}") from None


def proxy_url_secrets(url: str) -> list[str]:
    """What of a proxy URL must never be shown: the URL itself and its password (as written
    and decoded), for the redactor."""
    text = url.strip()
    found = [text]
    try:
        password = urlsplit(text if "://" in text else f"http://{text}").password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    return found


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6] or [v6]:port
        address, _, rest = entry[1:].partition("]")
        return address, _port(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:  # name:port or v4:port; a bare v6 address has several colons
        name, _, port = entry.partition(":")
        return name, _port(port)
    return entry, None


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() else -1  # -1: a port that matches nothing


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in_network(address: ipaddress.IPv4Address | ipaddress.IPv6Address, entry: str) -> bool:
    try:
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
