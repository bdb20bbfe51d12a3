"""Whether an address is this machine: the tools send a key or a token over plain http only to it.

The scripts keep their own `_is_loopback` (a script is self-contained); importing parts.transport here
instead would load httpx into every tool, even one that only prints its --help."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    """By address, not by prefix: 127.0.0.1.nip.io is a public name, not this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback(urlsplit(url).hostname or "")
