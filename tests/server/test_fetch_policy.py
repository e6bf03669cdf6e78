"""The fetch policy (issue 13, SSRF): what the server may fetch (relays, their redirects and
playlist entries, CAP resources) is decided on the address connected to, after DNS and on
every hop. Loopback and private addresses are refused unless ``[network] fetch_allow``
names them; ``fetch_deny`` always wins. A refused relay says why and backs off."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from loa.app import LoaServer
from loa.config import Config, ConfigError, apply_toml
from loa.core.fetch_policy import FetchPolicy
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.playout.inputs.relay import RelayState
from tests.audio import dominant_hz, tone_bytes
from tests.server.test_alerts import fake_clock_server
from tests.server.test_api import call
from tests.server.test_cap import cap_xml, post_cap
from tests.server.test_ingest import wait_for

HINT = "allow it in [network] fetch_allow"
DEFAULT = FetchPolicy()


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback address"), ("127.200.1.1", "loopback address"),
    ("::1", "loopback address"),
    ("10.0.0.5", "private address"), ("172.16.4.4", "private address"),
    ("172.31.255.255", "private address"), ("192.168.1.1", "private address"),
    ("169.254.169.254", "link-local address"), ("fe80::1", "link-local address"),
    ("fe80::1%2", "link-local address"),
    ("100.64.0.1", "shared (CGNAT) address"), ("100.127.255.254", "shared (CGNAT) address"),
    ("fd12:3456::1", "unique-local address"), ("fc00::1", "unique-local address"),
    ("224.0.0.251", "multicast address"), ("ff02::1", "multicast address"),
    ("0.0.0.0", "unspecified address"), ("::", "unspecified address"),
    ("255.255.255.255", "reserved address"),
    # IPv6 forms that carry an IPv4 address are judged as that address
    ("::ffff:127.0.0.1", "loopback address (127.0.0.1)"),
    ("::ffff:10.1.2.3", "private address (10.1.2.3)"),
    ("::ffff:169.254.169.254", "link-local address (169.254.169.254)"),
    ("::ffff:100.64.0.1", "shared (CGNAT) address (100.64.0.1)"),
    ("64:ff9b::a00:5", "private address (10.0.0.5)"),  # NAT64
    # public addresses pass
    ("8.8.8.8", None), ("172.32.0.1", None), ("100.128.0.1", None), ("2001:4860::8888", None),
    ("::ffff:8.8.8.8", None),
])
def test_what_the_default_policy_refuses(address: str, reason: str | None) -> None:
    refused = DEFAULT.refusal(address, address)
    if reason is None:
        assert refused is None
    else:
        assert refused is not None
        assert str(refused) == f"fetch from {address} refused: {reason}; {HINT}"


def test_allow_lifts_only_the_default_denials_and_an_explicit_deny_always_wins() -> None:
    policy = FetchPolicy.parse(allow=["10.20.0.0/16", "studio.lan", "*.tinh.vn", "::1"],
                               deny=["10.20.9.0/24", "8.8.4.4", "xau.tinh.vn"])
    assert policy.refusal("10.20.1.1", "10.20.1.1") is None
    assert policy.refusal("x", "::ffff:10.20.1.1") is None  # the mapped form too
    assert policy.refusal("::1", "::1") is None
    refused = policy.refusal("10.21.0.1", "10.21.0.1")
    assert refused is not None and refused.reason == "private address"
    # a host name allowed: its addresses are, whatever they are; a subdomain pattern
    assert policy.refusal("studio.lan", "192.168.1.9") is None
    assert policy.refusal("STUDIO.LAN.", "192.168.1.9") is None
    assert policy.refusal("radio.tinh.vn", "10.99.0.1") is None
    refused = policy.refusal("tinh.vn", "10.99.0.1")  # the domain itself is not a subdomain
    assert refused is not None and refused.target == "tinh.vn (10.99.0.1)"
    # deny beats allow, the default, and names
    for host, address, entry in [("10.20.9.9", "10.20.9.9", "10.20.9.0/24"),
                                 ("x", "::ffff:10.20.9.9", "10.20.9.0/24"),
                                 ("dns.google", "8.8.4.4", "8.8.4.4"),
                                 ("xau.tinh.vn", "1.2.3.4", "xau.tinh.vn")]:
        refused = policy.refusal(host, address)
        assert refused is not None and refused.hint == ""
        assert refused.reason == f"denied by [network] fetch_deny {entry!r}"
    assert policy.refusal("www.tinh.vn", "1.2.3.4") is None  # public: no allowing needed


def test_the_network_section_is_read_and_bad_entries_are_named() -> None:
    cfg = apply_toml(Config(), {"network": {"fetch_allow": ["192.168.5.0/24"],
                                            "fetch_deny": ["192.168.5.7"]}})
    assert cfg.fetch_policy.refusal("192.168.5.1", "192.168.5.1") is None
    assert cfg.fetch_policy.refusal("192.168.5.7", "192.168.5.7") is not None
    assert Config().fetch_policy == DEFAULT
    for network, message in [
        ({"fetch_allow": "10.0.0.0/8"}, "fetch_allow must be a list"),
        ({"fetch_allow": ["10.0.0.1/8"]}, "fetch_allow: '10.0.0.1/8' is not a network"),
        ({"fetch_deny": ["127.1"]}, "fetch_deny: '127.1' is not a network"),
        ({"fetch_deny": ["not a host"]}, "'not a host' is not a network, an address, a host"),
    ]:
        with pytest.raises(ConfigError, match=message):
            apply_toml(Config(), {"network": network})


async def serve(host: str, routes: dict[str, web.StreamResponse | str]
                ) -> tuple[web.AppRunner, int, list[str]]:
    """A small station on ``host`` (a loopback address): each path answers its response, or
    a redirect to the URL given as text. (runner, port, paths asked)."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        answer = routes.get(request.path)
        if isinstance(answer, str):
            raise web.HTTPFound(answer)
        return answer if answer is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    return runner, runner.addresses[0][1], hits


async def relay(server: LoaServer, url: str) -> int:
    status, body = await call(server, "POST", "/api/v1/zones/huyen/requests",
                              json={"source": {"kind": "relay", "url": url}, "priority": 50})
    assert status == 201, body
    return int(body["request"]["id"])


async def refusal_shown(server: LoaServer, rid: int) -> dict:
    """The relay's state in /api/v1/status, once it has failed and waits its backoff."""
    await wait_for(lambda: server.relays[rid].state is RelayState.WAITING)
    status, body = await call(server, "GET", "/api/v1/status")
    assert status == 200
    described: dict = body["relays"][str(rid)]
    return described


@pytest.mark.parametrize(("url", "shown"), [
    ("http://127.0.0.1:{port}/radio.mp3", "127.0.0.1 refused: loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/radio.mp3",  # written by yarl as ::ffff:7f00:1
     "::ffff:7f00:1 refused: loopback address (127.0.0.1)"),
    ("http://localhost:{port}/radio.mp3", "localhost (127.0.0.1) refused: loopback address"),
    ("http://10.255.0.1:8000/live", "10.255.0.1 refused: private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 refused: link-local address"),
])
async def test_by_default_a_relay_to_loopback_or_private_is_refused_says_why_and_backs_off(
        tmp_path: Path, url: str, shown: str) -> None:
    runner, port, hits = await serve("127.0.0.1", {"/radio.mp3": web.Response(body=b"x")})
    server, clock = await fake_clock_server(tmp_path, fetch_policy=DEFAULT)
    try:
        rid = await relay(server, url.format(port=port))
        described = await refusal_shown(server, rid)
        if "localhost" in url and "::1" in described["last_error"]:  # a host that lists ::1
            shown = "localhost (::1) refused: loopback address"
        assert described["last_error"] == f"relay to {shown}; {HINT}"
        assert described["state"] == "waiting" and described["failures"] == 1
        assert described["connects"] == 0 and hits == []  # nothing reached the upstream
        # not a hot loop: the next try waits its backoff (0.25 s at least, then doubling)
        await clock.advance(200_000_000)
        assert server.relays[rid].failures == 1
        for _ in range(100):  # ten seconds, a tenth at a time
            await clock.advance(100_000_000)
            await wait_for(lambda: server.relays[rid].state is RelayState.WAITING)
        assert 2 <= server.relays[rid].failures <= 6  # tries at >= 0.25, 0.75, 1.75, 3.75, 7.75 s
        assert hits == []
    finally:
        await server.stop()
        await runner.cleanup()


async def test_a_name_allowed_by_name_is_fetched(tmp_path: Path) -> None:
    runner, port, hits = await serve("127.0.0.1", {"/radio.mp3": web.Response(body=b"x")})
    server, _ = await fake_clock_server(tmp_path, fetch_policy=FetchPolicy.parse(["localhost"]))
    try:
        rid = await relay(server, f"http://localhost:{port}/radio.mp3")
        await wait_for(lambda: hits == ["/radio.mp3"])
        assert "refused" not in server.relays[rid].last_error
    finally:
        await server.stop()
        await runner.cleanup()


@pytest.mark.parametrize(("allow", "deny", "reason"), [
    (["127.0.0.1/32"], [], f"loopback address; {HINT}"),  # 127.0.0.2 was never allowed
    (["127.0.0.0/8"], ["127.0.0.2"], "denied by [network] fetch_deny '127.0.0.2'"),
])
@pytest.mark.parametrize("via", ["redirect", "playlist"])
async def test_a_redirect_or_playlist_entry_to_a_denied_address_is_refused(
        tmp_path: Path, allow: list[str], deny: list[str], reason: str, via: str) -> None:
    inner, inner_port, inner_hits = await serve(
        "127.0.0.2", {"/radio.mp3": web.Response(body=b"x")})
    denied = f"http://127.0.0.2:{inner_port}/radio.mp3"
    outer, port, outer_hits = await serve("127.0.0.1", {
        "/go": denied,
        "/list.m3u": web.Response(text=f"#EXTM3U\n{denied}\n", content_type="audio/x-mpegurl"),
    })
    server, _ = await fake_clock_server(tmp_path, fetch_policy=FetchPolicy.parse(allow, deny))
    try:
        path = "/go" if via == "redirect" else "/list.m3u"
        rid = await relay(server, f"http://127.0.0.1:{port}{path}")
        described = await refusal_shown(server, rid)
        assert described["last_error"] == f"relay to 127.0.0.2 refused: {reason}"
        assert outer_hits == [path] and inner_hits == []
        if via == "playlist":
            assert denied in described["entries"]
    finally:
        await server.stop()
        await outer.cleanup()
        await inner.cleanup()


async def test_an_allowed_network_relays_another_station(make_server) -> None:  # type: ignore[no-untyped-def]
    province = await make_server()
    await call(province, "POST", "/api/v1/zones/huyen/requests",
               json={"source": {"kind": "tone", "freq_hz": 660}, "priority": 50})
    district = await make_server(fetch_policy=FetchPolicy.parse(["127.0.0.1/32"]))
    await relay(district, f"http://127.0.0.1:{province.port}/zones/huyen/stream.ogg")
    await wait_for(lambda: district.engine.channels["an-binh-1"].on_air.priority == 50)
    ep = SimulatedEndpoint(f"ws://127.0.0.1:{district.port}/zones/an-binh-1/ws", decode=True)
    async with aiohttp.ClientSession() as http:
        await ep.run(http, seconds=1.5)
    assert dominant_hz(ep.decoder.pcm()[9600:]) == pytest.approx(660, rel=0.01)  # type: ignore[union-attr]


async def test_a_cap_resource_on_a_refused_address_gives_way_to_the_text(
        make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    audio = await tone_bytes(tmp_path / "msg.mp3", 700, 1.0, ["-c:a", "libmp3lame"])
    digest = hashlib.sha1(audio).hexdigest()  # noqa: S324  (CAP 1.2's digest is SHA-1)
    runner, port, hits = await serve("127.0.0.1", {"/ban-tin.mp3": web.Response(body=audio)})
    try:
        server = await make_server(fetch_policy=DEFAULT)
        uri = f"http://127.0.0.1:{port}/ban-tin.mp3"
        resource = ("<resource><resourceDesc>Bản tin</resourceDesc><mimeType>audio/mpeg"
                    f"</mimeType><uri>{uri}</uri><digest>{digest}</digest></resource>")
        status, body = await post_cap(server, cap_xml("S1", resource=resource))
        assert status == 201
        alert = server.alerts.alerts[body["alert"]["id"]]
        await asyncio.wait_for(alert.message_ready(), 30)
        assert alert.warnings[0].startswith(
            f"resource {uri}: fetch from 127.0.0.1 refused: loopback address; {HINT}")
        assert "read aloud instead" in alert.warnings[0]
        assert alert.message is not None and alert.message.suffix == ".wav"  # the CAP text
        assert hits == []
    finally:
        await runner.cleanup()
