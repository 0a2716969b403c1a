"""Plain HTTP from a client on this machine only, judged from the connection, never from headers.

Client secrets and access tokens must not cross a network in clear (RFC 6749 §1.6). authlib's
own check accepts ``http://`` when the URL's host is loopback, but Starlette builds that URL from
the client's ``Host`` header, so any client sending ``Host: localhost`` would pass. Here the
scheme is the connection's (``https`` only where the ASGI server terminates TLS: ``partage
serve`` trusts no ``X-Forwarded-Proto``) and the address is the TCP peer's, so a TLS-terminating
proxy on this machine (a loopback peer) is admitted and a remote client speaking plain HTTP is
not, whatever its headers say.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address: 127.0.0.0/8, ``::1``, or ``::ffff:127.x``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # Python before 3.11.11 does not count an IPv4-mapped loopback address as loopback.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def insecure_transport(request: Request) -> str | None:
    """Why ``request`` may not carry credentials or tokens (None: it came over TLS, or in plain
    HTTP from a loopback peer)."""
    if request.url.scheme == "https":  # the connection's scheme (the ASGI scope), not a header
        return None
    peer = request.client.host if request.client else None
    if peer and is_loopback(peer):
        return None
    return (
        "plain HTTP is accepted from a loopback address only (this connection comes from "
        f"{peer or 'an unknown address'}): use https, so that secrets and tokens are not sent"
        " in clear"
    )


def connection_url(request: Request) -> str:
    """``request``'s URL with the TCP peer as its host, for authlib: its own transport check
    reads the URL's host, which must not come from the client's ``Host`` header."""
    peer = request.client.host if request.client else None
    return str(request.url.replace(hostname=peer) if peer else request.url)
