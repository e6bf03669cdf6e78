"""The emergency level belongs to alerts: an operator cannot take it, and a request held at
that level gives the air to an alert (issue 13: an operator could block emergency alerts)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from loa.config import TokenConfig
from loa.control.alerts.model import parse_spec
from loa.control.auth import token_hash
from loa.core.pcm import SAMPLE_RATE
from tests.audio import dominant_hz
from tests.server.test_alerts import OPERATOR_TOKEN, ear, fake_clock_server, tick
from tests.server.test_api import call
from tests.server.test_engine import heard


async def test_an_operator_cannot_request_the_emergency_level(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(tokens=[TokenConfig("truc-ban", token_hash(OPERATOR_TOKEN),
                                                   ("operate",))])
    op = {"Authorization": f"Bearer {OPERATOR_TOKEN}", "Accept-Language": "en"}
    for priority in (100, "emergency"):
        status, body = await call(server, "POST", "/api/v1/zones/an-binh/requests",
                                  json={"source": {"kind": "tone"}, "priority": priority},
                                  headers=op)
        assert status == 403 and "reserved to emergency alerts" in body["error"], body
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/live",
                              json={"priority": 100}, headers=op)
    assert status == 403, body
    status, _ = await call(server, "POST", "/api/v1/zones/an-binh/requests",
                           json={"source": {"kind": "tone"}, "priority": 99}, headers=op)
    assert status == 201
    # the alert right may (an official's own live announcement at the top level)
    status, _ = await call(server, "POST", "/api/v1/zones/an-binh/requests",
                           json={"source": {"kind": "tone"}, "priority": 100})
    assert status == 201


async def test_an_alert_takes_the_air_from_a_request_held_first_at_its_level(
        tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "an-binh-1", "loa-001")
        status, _ = await call(server, "POST", "/api/v1/zones/an-binh/requests",
                               json={"source": {"kind": "tone", "freq_hz": 440},
                                     "priority": 100})
        assert status == 201
        await tick(server, clock, 25)  # 0.5 s of the held request
        spec = parse_spec({"zones": ["an-binh"], "content": {"kind": "tone"}},
                          default_gap_s=0.5, now=server.wall.timestamp())
        await server.alerts.trigger(spec, "test")
        await tick(server, clock, 40)  # the alert's 1 s attention tone, then some
        _, pcm = await asyncio.to_thread(heard, listener)
        held = pcm[int(0.1 * SAMPLE_RATE):int(0.4 * SAMPLE_RATE)]
        alert = pcm[int(0.55 * SAMPLE_RATE):int(0.75 * SAMPLE_RATE)]
        assert abs(dominant_hz(held) - 440) < 5
        assert min(abs(dominant_hz(alert) - f) for f in (853, 960)) < 10
    finally:
        await server.stop()
