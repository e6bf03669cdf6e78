"""Who gets a connection on the public port: a cap per client address, and a reserve of file
descriptors kept for the API and the sources.

Every connection costs a descriptor, and the process has ``RLIMIT_NOFILE`` of them. Measured
before this module (issue 13): 600 connections that never send a request, at ``ulimit -n 512``,
took every descriptor until the front door's 10 s head timeout let them go; ``accept`` failed
meanwhile, and the API was locked out for that long. So:

- **At start** the soft limit is raised to the hard one (``raise_fd_limit``): a default soft
  limit of 1,024 would otherwise cap a server meant for thousands of endpoints.
- **Per client address** (``address_key``: an IPv6 /64 counts as one) at most
  ``per_address`` connections are open at once; one more is answered 503 and closed before it
  is read. The default, 256, is high on purpose: endpoints behind a carrier-grade NAT (3G/4G
  operators share one public IPv4 among dozens of subscribers) come from one address, each
  with its stream connection. Loopback is exempt by default (a local reverse proxy, the load
  tester); a reverse proxy elsewhere must be listed in ``exempt`` too.
- **The reserve**: when fewer than ``reserve`` descriptors are free, the oldest connections
  still waiting for their request head (idle: a real client sends its head within a round
  trip) are answered 503 and closed as new ones are accepted (``accepted``, called by
  ``loa.playout.listener`` for every accepted descriptor), so that ``accept`` never runs dry;
  and a request that is not for the API, the Icecast admin or a source (a listener stream, an
  endpoint's WebSocket, a page) is answered 503 until descriptors are free again. The API and
  the sources get in.

Open descriptors are counted from ``/proc/self/fd`` (about 1 ms for 3,000, and file I/O: in a
thread), once a second, or at most every ``RECOUNT_NS`` when the estimate (the last count,
plus connections accepted since, minus those closed here) says the reserve is near.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from loa.core.counters import Counters
from loa.core.peers import AddressSet, address_key

log = logging.getLogger(__name__)

PER_ADDRESS = 256
RESERVE_FDS = 128
EXEMPT = ("127.0.0.1", "::1")
RECOUNT_NS = 250_000_000  # a /proc/self/fd count at most this often (the reserve near)
STALE_COUNT_NS = 1_000_000_000  # and whenever the last one is older than this
MAX_SOFT_LIMIT = 1 << 20  # when the hard limit is "unlimited"
SWEEP_MIN = 1024  # closed connections are swept from the per-address sets this often, at least
LOG_EVERY_NS = 1_000_000_000  # evictions are logged in a summary at most this often


def raise_fd_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (capped at 2**20 when unlimited) if
    the system lets us; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_SOFT_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, target, exc)
    return MAX_SOFT_LIMIT if soft == resource.RLIM_INFINITY else soft


def open_fd_count() -> int | None:
    """Descriptors open in this process now (Linux ``/proc/self/fd``), or None where that
    cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError:
        return None


Counted = Callable[[int | None], None]  # what a count calls with its result (None: unknown)


def count_now(count: Callable[[], int | None], done: Counted) -> None:
    """Run a count here and now (a pure test's, or at start)."""
    done(count())


def count_in_a_thread(count: Callable[[], int | None], done: Counted) -> None:
    """Run a count in the loop's executor (it reads ``/proc``: file I/O, kept off the loop)
    and give its result back on the loop; a count that fails gives None."""
    future = asyncio.get_running_loop().run_in_executor(None, count)
    future.add_done_callback(
        lambda f: done(None if f.cancelled() or f.exception() else f.result()))


class FdBudget:
    """How many descriptors are free: ``limit`` minus those open. ``count`` counts the open
    ones: once at construction, then (through ``spawn``: in a thread, in the server) whenever
    the last count is over a second old, or at most every ``RECOUNT_NS`` while the estimate is
    within twice the reserve of the limit. Between counts, connections accepted (``opened``)
    and closed (``released``) here move the estimate. ``now_ns``: a monotonic clock in ns."""

    def __init__(self, limit: int, *, count: Callable[[], int | None] = open_fd_count,
                 now_ns: Callable[[], int] = time.monotonic_ns,
                 spawn: Callable[[Callable[[], int | None], Counted], None] = count_now
                 ) -> None:
        self.limit = limit
        self._count = count
        self._spawn = spawn
        self.now_ns = now_ns
        self._counted: int | None = count()
        self._counted_ns = now_ns()
        self._counting = False
        self._since = 0  # opened minus released since the last count began
        self._floor = 0  # the highest accepted descriptor number + 1: at least that many open
        self._floor_counting = 0  # the same, since the count under way began
        self.counts = 1

    def opened(self, fd: int) -> None:
        """A connection was accepted on descriptor ``fd`` (-1 when unknown). Linux gives the
        lowest free number, so ``fd + 1`` descriptors at least are open."""
        self._since += 1
        self._floor = max(self._floor, fd + 1)
        self._floor_counting = max(self._floor_counting, fd + 1)

    def released(self, n: int = 1) -> None:
        """``n`` connections were closed here (they free their descriptors on the next turn)."""
        self._since -= n

    def _recount(self, now: int) -> None:
        self._counting = True
        self._counted_ns = now
        since_before = self._since
        self._floor_counting = 0

        def counted(value: int | None) -> None:
            self._counting = False
            self._counted = value
            self._since -= since_before  # what moved while it counted still counts
            self._floor = self._floor_counting
            self.counts += 1

        self._spawn(self._count, counted)

    def free(self, reserve: int) -> int:
        """Descriptors free now (an estimate), a count started if one is due (see above)."""
        now = self.now_ns()
        age = now - self._counted_ns
        if not self._counting and (age >= STALE_COUNT_NS or (
                age >= RECOUNT_NS and self._estimate() > self.limit - 2 * reserve)):
            self._recount(now)
        return self.limit - self._estimate()

    def _estimate(self) -> int:
        if self._counted is None:  # nothing to count with: the lowest-free rule alone
            return self._floor
        return max(self._counted + self._since, self._floor)


class Ticket:
    """One admitted connection: its client ``key`` and raw ``transport``, counted against the
    key until the transport closes. While its request head is awaited it is idle (``idle``,
    with the callback that answers 503 and closes it), and may be evicted under pressure."""

    __slots__ = ("_admission", "_evict", "key", "transport")

    def __init__(self, admission: Admission, key: str, transport: Any) -> None:
        self._admission = admission
        self.key = key
        self.transport = transport
        self._evict: Callable[[], None] | None = None

    @property
    def closed(self) -> bool:
        return bool(self.transport.is_closing())

    def idle(self, evict: Callable[[], None]) -> None:
        """Waiting for a request head (again): ``evict`` ends the connection if space is
        needed (the oldest idle connection goes first)."""
        self._evict = evict
        self._admission._idle.pop(self, None)
        self._admission._idle[self] = None

    def busy(self) -> None:
        """The head is in: the connection is being served, never evicted."""
        self._evict = None
        self._admission._idle.pop(self, None)

    def close(self) -> None:
        """The connection is gone: no longer counted."""
        self.busy()
        peers = self._admission._by_key.get(self.key)
        if peers is not None:
            peers.discard(self)
            if not peers:
                del self._admission._by_key[self.key]


class Admission:
    """Admits connections to the public port (``admit``): the cap per client address and the
    descriptor reserve described above. ``budget``: the descriptors (the process's, by
    default, with the soft limit raised). Counts ``connections_refused`` by ``reason``:
    ``per_address``, ``evicted`` (idle under pressure), ``reserve`` (a listener turned away
    under pressure)."""

    def __init__(self, counters: Counters, *, per_address: int = PER_ADDRESS,
                 exempt: AddressSet | None = None, reserve: int = RESERVE_FDS,
                 budget: FdBudget | None = None) -> None:
        self._counters = counters
        self.per_address = per_address
        self.exempt = exempt if exempt is not None else AddressSet(EXEMPT)
        self.budget = budget if budget is not None else FdBudget(raise_fd_limit(),
                                                                 spawn=count_in_a_thread)
        # never more than a quarter of the limit: a low limit must still serve someone
        self.reserve = min(reserve, self.budget.limit // 4)
        self._by_key: dict[str, set[Ticket]] = {}
        self._idle: OrderedDict[Ticket, None] = OrderedDict()
        self._tracked = 0  # admitted since the last sweep
        self._live_at_sweep = 0
        self._evicted_unlogged = 0
        self._logged_ns = -LOG_EVERY_NS
        self._refused_unlogged = 0
        self._refusal_logged_ns = -LOG_EVERY_NS
        for reason in ("per_address", "evicted", "reserve"):
            counters.inc("connections_refused", 0, reason=reason)

    def accepted(self, fd: int) -> None:
        """The listener took a connection on descriptor ``fd`` (before its transport exists):
        counted, and idle connections closed if the reserve needs it."""
        self.budget.opened(fd)
        self.relieve()

    def admit(self, transport: Any) -> Ticket | None:
        """A new connection (``accepted`` already): its Ticket, counted against its client
        address, or None when the address is at its cap (the caller answers 503 and
        closes)."""
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        key = address_key(host)
        self._sweep_now_and_then()
        peers = self._by_key.get(key)
        if (peers is not None and 0 < self.per_address <= len(peers)
                and host not in self.exempt):
            for t in [t for t in peers if t.closed]:
                t.close()
            if len(peers) >= self.per_address:
                self._counters.inc("connections_refused", reason="per_address")
                self._refused_unlogged += 1
                now = self.budget.now_ns()
                if now - self._refusal_logged_ns >= LOG_EVERY_NS:  # a flood logs once a second
                    log.warning("connection from %s refused: %d open from %s already (%d "
                                "refused for their address's cap since the last such line)",
                                host, len(peers), key, self._refused_unlogged)
                    self._refused_unlogged = 0
                    self._refusal_logged_ns = now
                return None
        ticket = Ticket(self, key, transport)
        self._by_key.setdefault(key, set()).add(ticket)
        self._tracked += 1
        return ticket

    @property
    def under_pressure(self) -> bool:
        """Fewer than ``reserve`` descriptors free: only the API and sources are served."""
        return self.budget.free(self.reserve) < self.reserve

    def turned_away(self) -> None:
        """Count a request refused for the reserve (the front door answers it 503)."""
        self._counters.inc("connections_refused", reason="reserve")

    def relieve(self) -> int:
        """Close the oldest idle connections until ``reserve`` descriptors are free (or none
        is idle); returns how many were closed. Logged at most once a second."""
        free = self.budget.free(self.reserve)
        evicted = 0
        while free + evicted < self.reserve and self._idle:
            ticket, _ = self._idle.popitem(last=False)
            evict, ticket._evict = ticket._evict, None
            if ticket.closed or evict is None:
                continue
            evict()
            evicted += 1
        if evicted:
            self.budget.released(evicted)
            self._counters.inc("connections_refused", evicted, reason="evicted")
            self._evicted_unlogged += evicted
        now = self.budget.now_ns()
        if self._evicted_unlogged and now - self._logged_ns >= LOG_EVERY_NS:
            log.warning("%d descriptors free (reserve %d of %d): %d idle connection(s) closed "
                        "to keep the reserve", free, self.reserve, self.budget.limit,
                        self._evicted_unlogged)
            self._evicted_unlogged = 0
            self._logged_ns = now
        return evicted

    def _sweep_now_and_then(self) -> None:
        """Forget closed connections of every address, after as many admissions as were
        alive at the last sweep (at least SWEEP_MIN): constant work per admission."""
        if self._tracked < max(SWEEP_MIN, self._live_at_sweep):
            return
        for peers in list(self._by_key.values()):
            for t in [t for t in peers if t.closed]:
                t.close()
        for t in [t for t in self._idle if t.closed]:
            self._idle.pop(t, None)
        self._tracked = 0
        self._live_at_sweep = self.open_connections()

    def open_connections(self, key: str | None = None) -> int:
        """Connections counted now (from client ``key``, or all); closed ones may linger
        until the next sweep."""
        if key is not None:
            return sum(not t.closed for t in self._by_key.get(key, ()))
        return sum(len(p) for p in self._by_key.values())

    def describe(self) -> dict[str, int]:
        """For the status: descriptor limit, reserve, free now, addresses and connections."""
        return {"fd_limit": self.budget.limit, "fd_reserve": self.reserve,
                "fd_free": self.budget.free(self.reserve), "addresses": len(self._by_key),
                "connections": self.open_connections(), "idle": len(self._idle)}
