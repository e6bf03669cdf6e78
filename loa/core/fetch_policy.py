"""Where the server may fetch from: the policy behind every outgoing HTTP connection (relays,
their playlist and HLS entries, redirects, CAP resources). Pure: no I/O, no aiohttp.

A URL names a host; the connection goes to an address. The policy decides for the pair
(host as the URL spells it, address actually connected to), so it is asked after DNS
resolution, once per address, on every hop of a redirect (``loa.playout.outbound`` does).

- **Denied by default**: loopback, private (RFC 1918), link-local (169.254.0.0/16, where cloud
  metadata services answer, and fe80::/10), shared address space (CGNAT, 100.64.0.0/10),
  unique-local (fc00::/7), multicast, unspecified ("this host", 0.0.0.0/8 and ::), reserved
  (240.0.0.0/4, broadcast included). An IPv6 address that carries an IPv4 one (IPv4-mapped
  ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d``) is judged as that IPv4 address too.
- **``allow``** entries lift the default denials for what they match, and only those: an
  address not denied by default needs no allowing.
- **``deny``** entries refuse what they match, always, allowed or not.
- An entry is a network (``10.20.0.0/16``), an address (``192.168.1.10``, ``::1``), a host
  name (``studio.lan``: matched against the URL's host, so its addresses are allowed or
  denied whatever they are) or a domain's subdomains (``*.vov.vn``).
- Ports are not restricted: any port of an allowed address may be fetched.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from loa.core.i18n import N_
from loa.core.peers import (
    AddressEntryError,
    IPAddress,
    IPNetwork,
    looks_like_address,
    parse_network,
)

_NET = ipaddress.ip_network
DEFAULT_DENIED: tuple[tuple[IPNetwork, str], ...] = (
    (_NET("127.0.0.0/8"), "loopback"),
    (_NET("::1/128"), "loopback"),
    (_NET("10.0.0.0/8"), "private"),
    (_NET("172.16.0.0/12"), "private"),
    (_NET("192.168.0.0/16"), "private"),
    (_NET("169.254.0.0/16"), "link-local"),
    (_NET("fe80::/10"), "link-local"),
    (_NET("100.64.0.0/10"), "shared (CGNAT)"),
    (_NET("fc00::/7"), "unique-local"),
    (_NET("224.0.0.0/4"), "multicast"),
    (_NET("ff00::/8"), "multicast"),
    (_NET("0.0.0.0/8"), "unspecified"),
    (_NET("::/128"), "unspecified"),
    (_NET("240.0.0.0/4"), "reserved"),
)
"""(network, kind) of what is refused unless ``allow`` names it."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\Z")
ALLOW_HINT = "allow it in [network] fetch_allow"


class FetchRefused(OSError):
    """A connection the fetch policy refuses. ``host``: the URL's host; ``address``: the
    address it would have connected to; ``reason``: why ("private address", "denied by
    [network] fetch_deny '10.0.0.0/8'"); ``hint``: what would allow it ("" when nothing
    would: an explicit deny). An OSError (EACCES), so an HTTP client reports it as a failed
    connection; ``str()`` reads "fetch from 10.0.0.5 refused: private address; …"."""

    def __init__(self, host: str, address: str, reason: str, hint: str = "") -> None:
        self.host = host
        self.address = address
        self.reason = reason
        self.hint = hint
        super().__init__(errno.EACCES, self.explain("fetch from"))

    @property
    def target(self) -> str:
        """The address, after the host name when the URL named one: "localhost (127.0.0.1)"."""
        return self.address if _same_host(self.host, self.address) else \
            f"{self.host} ({self.address})"

    def explain(self, what: str) -> str:
        """The refusal as one line after ``what``: ``explain("relay to")`` gives "relay to
        10.0.0.5 refused: private address; allow it in [network] fetch_allow"."""
        return f"{what} {self.target} refused: {self.reason}" + \
            (f"; {self.hint}" if self.hint else "")

    def __str__(self) -> str:
        return self.explain("fetch from")

    def __reduce__(self) -> tuple[type[FetchRefused], tuple[str, str, str, str]]:
        return type(self), (self.host, self.address, self.reason, self.hint)


def refusal_in(exc: BaseException | None) -> FetchRefused | None:
    """The `FetchRefused` behind ``exc`` (itself, or its cause or context, however deep: an
    HTTP client wraps it in its own connection error), or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, FetchRefused):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@dataclass(frozen=True, slots=True)
class FetchRule:
    """One ``fetch_allow`` / ``fetch_deny`` entry: a network, or a host name (``suffix``: a
    ``*.domain`` entry, matching the domain's subdomains). ``text``: as written."""

    text: str
    network: IPNetwork | None = None
    name: str = ""
    suffix: bool = False

    @classmethod
    def parse(cls, text: str) -> FetchRule:
        """A rule from its text: ``10.0.0.0/8``, ``192.168.1.10``, ``fd00::/8``,
        ``studio.lan``, ``*.vov.vn``; a network or address as ``peers.parse_network`` reads
        it. Raises AddressEntryError (a ValueError) naming the entry: a network with host bits
        set, an address that does not parse, a name that is not a host name."""
        entry = text.strip()
        if looks_like_address(entry):
            return cls(text, network=parse_network(text))
        suffix = entry.startswith("*.")
        name = _host_name(entry[2:] if suffix else entry)
        if name is None:
            raise AddressEntryError(
                N_("{entry!r} is not a network, an address, a host name or *.domain"),
                entry=text)
        return cls(text, name=name, suffix=suffix)

    def matches(self, host: str, addresses: tuple[IPAddress, ...]) -> bool:
        """True when the rule covers the URL's ``host`` (already normalised: lower case, no
        trailing dot) or one of ``addresses`` (the address connected to and the IPv4 one it
        carries)."""
        if self.network is not None:
            return any(a.version == self.network.version and a in self.network
                       for a in addresses)
        if self.suffix:
            return host.endswith("." + self.name)
        return host == self.name


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """The ``[network]`` fetch policy: ``allow`` lifts the default denials, ``deny`` always
    refuses (see the module). The default (no rules) denies ``DEFAULT_DENIED``."""

    allow: tuple[FetchRule, ...] = ()
    deny: tuple[FetchRule, ...] = ()

    @classmethod
    def parse(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> FetchPolicy:
        """A policy from the entries' texts. Raises AddressEntryError (a ValueError) naming
        a bad entry."""
        return cls(tuple(FetchRule.parse(str(e)) for e in allow),
                   tuple(FetchRule.parse(str(e)) for e in deny))

    def refusal(self, host: str, address: str) -> FetchRefused | None:
        """Why a connection to ``address`` for a URL naming ``host`` is refused, or None when
        it may go ahead. ``host`` is the URL's host as written (a name, or the address
        itself); ``address`` an IPv4 or IPv6 address (a ``%scope`` suffix allowed). An
        address that does not parse is refused."""
        name = _normalise(host)
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return FetchRefused(host, address, "not an IP address")
        candidates = _with_embedded(ip)
        for rule in self.deny:
            if rule.matches(name, candidates):
                return FetchRefused(host, address,
                                    f"denied by [network] fetch_deny {rule.text!r}")
        denial = _default_denial(candidates)
        if denial is None or any(rule.matches(name, candidates) for rule in self.allow):
            return None
        kind, carried = denial
        reason = f"{kind} address" if carried == ip else f"{kind} address ({carried})"
        return FetchRefused(host, address, reason, ALLOW_HINT)


def _with_embedded(ip: IPAddress) -> tuple[IPAddress, ...]:
    """``ip``, and the IPv4 address an IPv6 one carries (IPv4-mapped, NAT64)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip, ip.ipv4_mapped
        if ip in _NAT64:
            return ip, ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return (ip,)


def _default_denial(candidates: tuple[IPAddress, ...]) -> tuple[str, IPAddress] | None:
    """(kind, the address it applies to: the IPv4 one an IPv6 address carries, say), or
    None when no default denial applies."""
    for network, kind in DEFAULT_DENIED:
        for a in candidates:
            if a.version == network.version and a in network:
                return kind, a
    return None


def _normalise(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _same_host(host: str, address: str) -> bool:
    return _normalise(host) == _normalise(address)


def _host_name(text: str) -> str | None:
    """``text`` as a normalised host name (lower case, IDNA for non-ASCII), or None."""
    name = text.rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return name
