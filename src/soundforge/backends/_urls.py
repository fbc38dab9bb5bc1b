"""Where a provider-given output URL may be fetched from: https only, never inside the network unless allowed."""

from __future__ import annotations

import ipaddress
import socket
from typing import Protocol
from urllib.parse import urlsplit

from ..errors import ProviderError


class UrlRules(Protocol):
    """The settings `check_output_url` reads (a provider's `HttpSettings`)."""

    @property
    def allow_loopback_urls(self) -> bool: ...

    @property
    def allow_private_urls(self) -> bool: ...


def check_output_url(url: str, settings: UrlRules) -> None:
    """Refuse to fetch a provider-given URL that is not https, or that points inside the network.

    Plain http is allowed only to loopback, and loopback only with `allow_loopback_urls` (tests);
    private, link-local and reserved addresses only with `allow_private_urls`.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ProviderError(f"refusing to fetch output URL with scheme {parts.scheme!r}")
    try:
        addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, parts.port or 443)}
    except socket.gaierror as exc:
        raise ProviderError(f"cannot resolve output host {host!r}: {exc}") from None
    loopback = all(a.is_loopback for a in addresses)
    if loopback:
        if not settings.allow_loopback_urls:
            raise ProviderError(
                f"refusing to fetch output URL on a loopback address ({host})",
                hint="set allow_loopback_urls = true only for local test servers",
            )
        return
    if parts.scheme != "https":
        raise ProviderError("refusing to fetch an output URL over plain http")
    inside = [a for a in addresses if a.is_private or a.is_link_local or a.is_reserved or a.is_multicast]
    if inside and not settings.allow_private_urls:
        raise ProviderError(
            f"refusing to fetch output URL on an internal address ({host} -> {inside[0]})",
            hint="set allow_private_urls = true if your gateway serves outputs internally",
        )
