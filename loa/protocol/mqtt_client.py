"""aiomqtt, the MQTT client, imported without dnspython: every module of Loa takes it from here.

paho-mqtt (under aiomqtt) imports ``dns.resolver`` when it can, for one call Loa never makes
(``connect_srv``: a broker found by a DNS SRV record); that import costs every server 6 MB of
resident memory (issue 17: RSS at idle). While aiomqtt is imported, ``dns.resolver`` is marked
absent (a ``None`` in ``sys.modules`` makes ``import`` raise ImportError, which paho takes to mean
"no dnspython"); afterwards the mark is gone, so whoever needs dnspython later (aioice, under
WebRTC) imports it as usual.
"""

from __future__ import annotations

import sys

_MARKED = "dns.resolver" not in sys.modules
if _MARKED:
    sys.modules["dns.resolver"] = None  # type: ignore[assignment]
try:
    import aiomqtt as aiomqtt
finally:
    if _MARKED and sys.modules.get("dns.resolver", 0) is None:
        del sys.modules["dns.resolver"]

__all__ = ["aiomqtt"]
