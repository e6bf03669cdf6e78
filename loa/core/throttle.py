"""Slowing down password guessing, per client address (as fail2ban or nginx's ``limit_req``).

A source password or an API token that is wrong costs its sender time, and more time the more
wrong ones the address sent lately; a right one is never made to wait:

- The first ``free_failures`` failures of an address are answered at once (typos happen).
- Each further failure is answered only after a delay that doubles, ``base_delay_s`` then 2×,
  4×… up to ``max_delay_s``. The answer is held, not the check: the server knows at once.
- An address may have at most ``max_pending`` such held answers. A request from an address at
  that limit is refused (429) *without looking at its credentials*: answering a guess at once
  would tell the guesser whether it was right. So guesses per second per address stay under
  ``max_pending / delay``, whatever the number of connections, where an unthrottled server
  answered thousands a second.
- Failures are forgotten, one every ``forget_s``.

What this costs the right password: nothing from another address (each address has its own
account), nothing at an address that is not at its limit (a right password is accepted at
once, never held). Only a client sharing its address with an active guesser (a carrier-grade
NAT, a reverse proxy that does not forward the client's address) can meet a 429 while the
guesser holds all of the address's slots.

The memory is bounded: at most ``max_addresses`` addresses are remembered, the least recently
seen forgotten first; an address whose failures are all forgotten is dropped.

This is the pure core: the caller holds the answer (a timer, a sleep) and says when it went.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from loa.core.clock import NS_PER_S
from loa.core.peers import AddressSet, address_key, client_host

FREE_FAILURES = 5  # fail2ban's maxretry
BASE_DELAY_S = 1.0
MAX_DELAY_S = 30.0
FORGET_S = 60.0  # one failure forgotten a minute
MAX_PENDING = 4
MAX_ADDRESSES = 10_000


@dataclass(slots=True)
class _Account:
    failures: float  # failures not yet forgotten, as of at_ns
    at_ns: int
    pending: int = 0  # held failure answers not yet sent


class FailureThrottle:
    """Failed logins per client address, and the delay each failure's answer gets.

    ``now_ns``: a clock in ns (the server's, or a fake one in tests). ``trusted_proxies``:
    peers whose ``X-Forwarded-For`` names the client (``key_for``). ``max_delay_s`` 0 turns
    the throttle off (every failure answered at once, nobody refused)."""

    def __init__(self, now_ns: Callable[[], int], *, free_failures: int = FREE_FAILURES,
                 base_delay_s: float = BASE_DELAY_S, max_delay_s: float = MAX_DELAY_S,
                 forget_s: float = FORGET_S, max_pending: int = MAX_PENDING,
                 max_addresses: int = MAX_ADDRESSES,
                 trusted_proxies: AddressSet | None = None) -> None:
        self._now_ns = now_ns
        self.free_failures = free_failures
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_s = forget_s
        self.max_pending = max_pending
        self.max_addresses = max_addresses
        self.trusted_proxies = trusted_proxies if trusted_proxies is not None else AddressSet()
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self.refused = 0  # requests refused unexamined (429)
        self.held = 0  # failure answers delayed

    @property
    def enabled(self) -> bool:
        return self.max_delay_s > 0

    def key_for(self, peer_host: str, forwarded_for: str = "") -> str:
        """The account a request counts against: the client's address (``peer_host``, or the
        client a trusted proxy forwards for), an IPv6 client by its /64."""
        return address_key(client_host(peer_host, forwarded_for, self.trusted_proxies))

    def _account(self, key: str, now_ns: int) -> _Account | None:
        acct = self._accounts.get(key)
        if acct is None:
            return None
        forgotten = (now_ns - acct.at_ns) / (self.forget_s * NS_PER_S)
        acct.failures = max(0.0, acct.failures - forgotten)
        acct.at_ns = now_ns
        if acct.failures == 0 and acct.pending == 0:
            del self._accounts[key]
            return None
        self._accounts.move_to_end(key)
        return acct

    def _delay_s(self, failures: float) -> float:
        excess = math.ceil(failures - self.free_failures - 1e-9)
        if excess <= 0:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(excess - 1, 62))

    def blocked_for_s(self, key: str) -> float:
        """0 when a request from ``key`` may be examined; else the address is at its limit of
        held answers, and this is about how long (s) until it may try again (Retry-After).
        The caller then refuses the request without looking at its credentials."""
        if not self.enabled:
            return 0.0
        acct = self._account(key, self._now_ns())
        if acct is None or acct.pending < self.max_pending:
            return 0.0
        self.refused += 1
        return max(1.0, self._delay_s(acct.failures + 1))  # what one more failure would wait

    def failed(self, key: str) -> float:
        """Count a failure of ``key`` now; returns how long (s) to hold its answer. 0: answer
        at once. More: the caller holds the answer that long and then calls ``done(key)``
        (also when the client leaves first): until then it takes one of the address's
        ``max_pending`` slots."""
        if not self.enabled:
            return 0.0
        now = self._now_ns()
        acct = self._account(key, now)
        if acct is None:
            acct = self._accounts[key] = _Account(0.0, now)
            while len(self._accounts) > self.max_addresses:
                self._accounts.popitem(last=False)  # the least recently seen address
        acct.failures += 1
        delay = self._delay_s(acct.failures)
        if delay > 0:
            acct.pending += 1
            self.held += 1
        return delay

    def done(self, key: str) -> None:
        """A held failure answer of ``key`` went out (or its client left)."""
        acct = self._accounts.get(key)
        if acct is not None and acct.pending > 0:
            acct.pending -= 1

    def describe(self, key: str) -> dict[str, float]:
        """An address's account now: failures not yet forgotten, held answers."""
        acct = self._account(key, self._now_ns())
        if acct is None:
            return {"failures": 0.0, "pending": 0}
        return {"failures": round(acct.failures, 3), "pending": acct.pending}

    def __len__(self) -> int:
        return len(self._accounts)
