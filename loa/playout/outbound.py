"""The server's outgoing HTTP client: every fetch (relays, their playlist and HLS entries,
redirects, CAP resources) goes through one session whose connector asks the fetch policy
(`loa.core.fetch_policy`) about each address before connecting to it.

Where the check sits, and why there:

- aiohttp's ``TCPConnector._resolve_host(host, port)`` is the one step every new connection
  passes, on every hop of a redirect: it returns the addresses the connector then connects
  to, by address, with no second lookup. Filtering its answer therefore judges the addresses
  actually connected to, which is what DNS rebinding attacks: a name that resolves to a
  public address when checked and to 10.0.0.5 when connected cannot slip through, because
  there is no "when connected" lookup. Cached answers (aiohttp keeps them 10 s) are filtered
  each time they are used.
- A custom ``AbstractResolver`` alone would not do: aiohttp never asks the resolver about a
  URL whose host is an address (``http://10.0.0.5/``, or a redirect to one), so those would
  pass unchecked. ``_resolve_host`` sees names and addresses alike. It is not public API:
  `GuardedConnector` refuses to be built when aiohttp no longer has it (failing closed), and
  ``tests/server/test_fetch_policy.py`` shows every path refused.
- Names resolve in a thread (``aiohttp.ThreadedResolver``), never on the loop.

A refused connection raises `FetchRefused` (an OSError), which aiohttp wraps in its
``ClientConnectorError``; `loa.core.fetch_policy.refusal_in` finds it again for the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiohttp
from aiohttp.abc import ResolveResult

from loa.core.fetch_policy import FetchPolicy, FetchRefused

if TYPE_CHECKING:
    from aiohttp.tracing import Trace


class GuardedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that connects only to the addresses ``policy`` allows: of a host's
    addresses, the refused ones are dropped; when none is left, connecting raises
    `FetchRefused` (the first refusal), wrapped by aiohttp in a ``ClientConnectorError``.
    Names resolve beside the loop. Raises RuntimeError when built on an aiohttp whose
    connector no longer resolves through ``_resolve_host`` (the check would be skipped)."""

    def __init__(self, policy: FetchPolicy) -> None:
        if not callable(getattr(aiohttp.TCPConnector, "_resolve_host", None)):
            raise RuntimeError("this aiohttp's TCPConnector has no _resolve_host: the fetch "
                               "policy cannot be applied (see loa/playout/outbound.py)")
        super().__init__(resolver=aiohttp.ThreadedResolver())
        self.policy = policy

    async def _resolve_host(self, host: str, port: int,
                            traces: Sequence[Trace] | None = None) -> list[ResolveResult]:
        """The addresses aiohttp will connect to for ``host``, those the policy refuses left
        out. Raises FetchRefused when none is left (OSError from the lookup as before)."""
        found = await super()._resolve_host(host, port, traces=traces)
        allowed: list[ResolveResult] = []
        first: FetchRefused | None = None
        for result in found:
            refused = self.policy.refusal(host, result["host"])
            if refused is None:
                allowed.append(result)
            elif first is None:
                first = refused
        if not allowed and first is not None:
            raise first
        return allowed


def outbound_session(policy: FetchPolicy) -> aiohttp.ClientSession:
    """The server's client session, every connection checked against ``policy`` (call it on
    the running loop; the caller closes it)."""
    return aiohttp.ClientSession(connector=GuardedConnector(policy))
