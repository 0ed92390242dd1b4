"""Where alert webhooks may go: never to a link-local address (cloud metadata services live
there, e.g. 169.254.169.254), a cloud's metadata host, or an unroutable one, unless the
configuration allows its network. A guard against server-side request forgery: the
service POSTs to URLs its users give it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

# Metadata services reachable outside the link-local ranges, by name or address.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
_METADATA_ADDRESSES = (
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS over IPv6
)
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> tuple[IpNetwork, ...]:
    """Parse CIDRs (e.g. the configured allowance); ValueError names a bad one."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def refusal(host: str, addresses: Sequence[str], allowed: Sequence[IpNetwork] = ()) -> str | None:
    """Why a webhook to `host` (which resolves to `addresses`) is refused; None: it may go.

    An IP literal host is its own address. Every address must pass: a name that resolves to
    one forbidden address is refused."""
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        return f"{host} is a cloud metadata service"
    for text in (name, *addresses) if _is_ip(name) else addresses:
        address = ipaddress.ip_address(text)
        if any(address in network for network in allowed):
            continue
        if any(address in network for network in _METADATA_ADDRESSES):
            return f"{address} is a cloud metadata service"
        if address.is_link_local:
            return f"{address} is link-local (where cloud metadata services answer)"
        if address.is_multicast or address.is_unspecified or address.is_reserved:
            return f"{address} is not a routable unicast address"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
