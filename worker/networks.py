"""Addresses and networks in settings (USQA_DICOM_ALLOWED_ADDRESSES,
USQA_WEB_TRUSTED_PROXIES): parsing them and asking whether a peer is one of them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["Network", "address_in", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> list[Network]:
    """Each text as a network (a bare address is a /32 or /128). Raises ValueError."""
    return [ipaddress.ip_network(text.strip(), strict=False) for text in values]


def address_in(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether ``address`` (a TCP peer, maybe IPv6 with a zone or an IPv4-mapped IPv6
    address) lies in one of ``networks``; False for no networks or no valid address."""
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)
