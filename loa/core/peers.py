"""Who a connection comes from, as the limits on hostile clients count it.

A limit per client address (connections per address, the throttle on wrong passwords) needs
one key per client. An IPv4 address is one key. An IPv6 host usually holds a whole /64 and may
pick a new address in it for every connection, so the /64 is the key; an IPv4-mapped IPv6
address (``::ffff:203.0.113.7``) counts as its IPv4 address. Behind a reverse proxy every
connection comes from the proxy, so the client is what the proxy wrote in
``X-Forwarded-For``, believed only when the peer is a configured trusted proxy.

Those limits, and the fetch policy (``loa.core.fetch_policy``), take lists of addresses and
networks from the configuration; ``parse_network`` reads each entry, the one way to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from loa.core.i18n import N_, Explained

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV6_CLIENT_PREFIX = 64  # one IPv6 client (a home, a 4G modem) holds a /64


class AddressEntryError(Explained, ValueError):
    """An entry of a configured list of addresses and networks (``[limits] exempt``,
    ``[network] fetch_allow``, …) that is not one; the message names the entry as written and
    says what is wrong with it, in its reader's language."""


def looks_like_address(entry: str) -> bool:
    """True when ``entry`` (stripped) was meant as an address or network, not a name: it has
    a ``/``, a ``:`` (IPv6), or only digits and dots (``127.1`` is a bad address, not a host
    name)."""
    return "/" in entry or ":" in entry or entry.replace(".", "").isdigit()


def parse_network(text: str) -> IPNetwork:
    """The network an entry names: ``10.0.0.0/8``, ``fd00::/8``, or a bare address as its
    own network (``192.0.2.1`` is ``192.0.2.1/32``, ``::1`` is ``::1/128``); blanks around it
    are ignored. Strict: an address with bits set beyond its prefix (``10.0.0.1/8``) is
    refused rather than widened to its network, since the writer may have meant either.
    Raises AddressEntryError naming ``text``: for that case, the two ways to write it."""
    entry = text.strip()
    # Only an IPv6 text has a colon: the family ip_network would pick, asked directly so its
    # error says what is wrong ("Expected 4 octets in '127.1'"), not only that it is neither.
    family = ipaddress.IPv6Network if ":" in entry else ipaddress.IPv4Network
    try:
        return family(entry)  # strict: host bits set are an error
    except ValueError as exc:
        reason = str(exc)
    if not looks_like_address(entry):
        raise AddressEntryError(N_("{entry!r} is not an IP address or network"), entry=text)
    try:
        interface = ipaddress.ip_interface(entry)  # parses: only host bits were wrong
    except ValueError:
        raise AddressEntryError(N_("{entry!r} is not a network or an address ({reason})"),
                                entry=text, reason=reason) from None
    raise AddressEntryError(
        N_("{entry!r} is not a network: {address} has bits set beyond the /{prefix} prefix; "
           "write {network} for the network or {address} for the one address"),
        entry=text, address=str(interface.ip), prefix=interface.network.prefixlen,
        network=str(interface.network))


def _ip(host: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])  # a scoped fe80::1%eth0 too
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_key(host: str) -> str:
    """The client key of a peer address: the IPv4 address itself, the /64 network of an IPv6
    address (``2001:db8:1:2::/64``), the IPv4 address of an IPv4-mapped one. A host that is
    not an IP address (a Unix socket's empty name) is its own key."""
    ip = _ip(host)
    if ip is None:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


class AddressSet:
    """A set of IP networks (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``), asked whether an
    address is in it. Each entry is read by ``parse_network``: AddressEntryError (a
    ValueError) names the first that is not an address or network."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.entries = tuple(str(e) for e in entries)
        self._nets = tuple(parse_network(entry) for entry in self.entries)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not self._nets:
            return False
        ip = _ip(host)
        return ip is not None and any(ip.version == n.version and ip in n for n in self._nets)

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddressSet) and self._nets == other._nets

    def __hash__(self) -> int:
        return hash(self._nets)

    def __repr__(self) -> str:
        return f"AddressSet({list(self.entries)!r})"


def client_host(peer_host: str, forwarded_for: str, trusted_proxies: AddressSet) -> str:
    """The client's address: ``peer_host``, unless the peer is a trusted proxy and says who
    it forwards for. ``X-Forwarded-For`` lists the hops, each proxy appending the address it
    was connected from; read from the right, the first hop that is not a trusted proxy is the
    client (anything left of it was written by the client and proves nothing)."""
    if not forwarded_for or peer_host not in trusted_proxies:
        return peer_host
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return hops[0] if hops else peer_host
