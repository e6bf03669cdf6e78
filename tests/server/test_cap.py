"""CAP 1.2 posted to /api/v1/cap: each sample does the right thing."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import aiohttp
from aiohttp import web

from loa.app import LoaServer
from loa.protocol.cap import MAX_CAP_BYTES
from tests.audio import tone_bytes
from tests.conftest import auth
from tests.server.test_ingest import base
from tests.upstream import http_upstream

SENDER = "kttv@province.gov.vn"


def cap_xml(identifier: str, *, status: str = "Actual", msg_type: str = "Alert",
            scope: str = "Public", references: str = "", urgency: str = "Immediate",
            severity: str = "Severe", area: str = "<geocode><valueName>MaDVHC</valueName>"
                                                  "<value>00001</value></geocode>",
            resource: str = "", expires: str = "2099-01-01T00:00:00+07:00") -> bytes:
    refs = f"<references>{references}</references>" if references else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>{SENDER}</sender>
  <sent>2026-11-26T10:00:00+07:00</sent><status>{status}</status>
  <msgType>{msg_type}</msgType><scope>{scope}</scope>{refs}
  <info>
    <language>vi-VN</language><category>Met</category><event>Lũ quét</event>
    <urgency>{urgency}</urgency><severity>{severity}</severity><certainty>Likely</certainty>
    <expires>{expires}</expires>
    <headline>Cảnh báo lũ quét</headline>
    <description>Mưa lớn gây lũ quét tại các thôn ven suối.</description>
    <instruction>Di chuyển ngay đến nơi cao.</instruction>
    {resource}
    <area><areaDesc>Khu vực cảnh báo</areaDesc>{area}</area>
  </info>
</alert>""".encode()


async def post_cap(server: LoaServer, body: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/cap", data=body,
                             headers={**auth(), "Content-Type": "application/xml"}) as resp:
            return resp.status, await resp.json()


async def test_valid_cap_plays_on_the_zones_of_its_geocode(server: LoaServer) -> None:
    status, body = await post_cap(server, cap_xml("A1"))
    assert status == 201 and body["result"] == "playing"
    alert = body["alert"]
    assert alert["zones"] == ["an-binh"] and alert["class"] == "emergency"
    assert alert["priority"] == 100 and alert["content"]["kind"] == "text"
    assert "Di chuyển ngay" in alert["content"]["text"]
    assert server.engine.channels["an-binh-2"].on_air.priority == 100 or any(
        r.priority == 100 for r in server.engine.channels["an-binh-2"].requests)
    # the same message again is recognised, not played twice
    status, again = await post_cap(server, cap_xml("A1"))
    assert status == 200 and again["result"] == "duplicate"


async def test_test_and_exercise_messages_are_logged_or_go_to_the_test_zone(
    make_server,  # type: ignore[no-untyped-def]
) -> None:
    plain = await make_server()
    status, body = await post_cap(plain, cap_xml("T1", status="Test"))
    assert status == 202 and body["result"] == "logged"
    assert not plain.alerts.alerts
    with_zone = await make_server(cap_test_zone="phu-my-2")
    status, body = await post_cap(with_zone, cap_xml("T2", status="Exercise"))
    assert status == 201 and body["alert"]["zones"] == ["phu-my-2"]


async def test_update_replaces_and_cancel_stops(server: LoaServer) -> None:
    _, first = await post_cap(server, cap_xml("U1"))
    ref = f"{SENDER},U1,2026-11-26T10:00:00+07:00"
    status, update = await post_cap(server, cap_xml("U2", msg_type="Update", references=ref,
                                                    urgency="Expected", severity="Moderate"))
    assert status == 201 and update["alert"]["class"] == "priority"
    assert server.alerts.alerts[first["alert"]["id"]].status.value == "cancelled"
    ref2 = f"{SENDER},U2,2026-11-26T10:05:00+07:00"
    status, cancel = await post_cap(server, cap_xml("U3", msg_type="Cancel", references=ref2))
    assert status == 200 and cancel["alerts"] == [update["alert"]["id"]]
    assert server.alerts.alerts[update["alert"]["id"]].status.value == "cancelled"


async def test_polygon_and_circle_target_the_endpoints_inside(server: LoaServer) -> None:
    # a small box around An Bình 1's clusters (15.500-15.501 N, 108.000 E) only
    poly = "<polygon>15.49,107.99 15.49,108.01 15.51,108.01 15.51,107.99 15.49,107.99</polygon>"
    status, body = await post_cap(server, cap_xml("P1", area=poly))
    assert status == 201 and body["alert"]["zones"] == []
    assert body["alert"]["endpoints"] == ["loa-001", "loa-002"]
    assert body["alert"]["reach"]["targeted"] == 2
    circle = "<circle>15.61,108.11 3</circle>"  # 3 km around the Phú Mỹ villages
    status, body = await post_cap(server, cap_xml("C1", area=circle))
    assert status == 201
    assert body["alert"]["endpoints"] == ["loa-005", "loa-006", "loa-007", "loa-008"]
    nowhere = "<circle>10.0,100.0 1</circle>"
    status, body = await post_cap(server, cap_xml("N1", area=nowhere))
    assert status == 422 and "area" in body["error"]


async def test_an_audio_resource_plays_after_its_digest_is_checked(server: LoaServer,
                                                                   tmp_path: Path) -> None:
    """A wrong digest passes the resource over (it is optional): the text is read instead."""
    audio = await tone_bytes(tmp_path / "msg.mp3", 700, 1.0, ["-c:a", "libmp3lame"])
    good = hashlib.sha1(audio).hexdigest()  # noqa: S324  (CAP 1.2's digest is SHA-1)
    res = ("<resource><resourceDesc>Bản tin</resourceDesc><mimeType>audio/mpeg</mimeType>"
           f"<digest>{{}}</digest><derefUri>{base64.b64encode(audio).decode()}</derefUri>"
           "</resource>")
    status, body = await post_cap(server, cap_xml("R1", resource=res.format("0" * 40)))
    assert status == 201 and body["alert"]["content"]["kind"] == "text"
    assert "digest does not match" in body["errors"][0]
    assert "read aloud instead" in body["errors"][-1]
    status, body = await post_cap(server, cap_xml("R2", resource=res.format(good)))
    assert status == 201 and body["alert"]["content"]["kind"] == "file"
    assert body["errors"] == []


async def test_a_resource_by_uri_is_fetched_while_the_tone_plays_and_text_replaces_it_if_lost(
        server: LoaServer, tmp_path: Path) -> None:
    audio = await tone_bytes(tmp_path / "msg.mp3", 700, 1.0, ["-c:a", "libmp3lame"])
    digest = hashlib.sha1(audio).hexdigest()  # noqa: S324  (CAP 1.2's digest is SHA-1)

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=audio)

    runner, port = await http_upstream("/ban-tin.mp3", serve)
    try:
        def res(uri: str) -> str:
            return ("<resource><resourceDesc>Bản tin</resourceDesc><mimeType>audio/mpeg"
                    f"</mimeType><uri>{uri}</uri><digest>{digest}</digest></resource>")

        status, body = await post_cap(server, cap_xml(
            "U1", resource=res(f"http://127.0.0.1:{port}/ban-tin.mp3")))
        assert status == 201 and body["alert"]["content"]["kind"] == "cap_resource"
        alert = server.alerts.alerts[body["alert"]["id"]]
        assert alert.programme is not None and alert.programme.available  # the tone, at once
        await alert.message_ready()
        assert alert.warnings == [] and alert.message is not None
        assert alert.message.read_bytes() == audio
        status, body = await post_cap(server, cap_xml(
            "U2", resource=res(f"http://127.0.0.1:{port}/gone.mp3")))
        assert status == 201
        lost = server.alerts.alerts[body["alert"]["id"]]
        await lost.message_ready()
        assert "read aloud instead" in lost.warnings[0]
        assert lost.message is not None and lost.message.suffix == ".wav"  # the CAP text
    finally:
        await runner.cleanup()


async def test_a_large_message_is_read_whole(server: LoaServer, tmp_path: Path) -> None:
    """A message near the size limit (its audio inline) is read whole and its audio kept."""
    audio = await tone_bytes(tmp_path / "long.mp3", 500, 12.0, ["-c:a", "libmp3lame",
                                                               "-b:a", "96k"])
    res = ("<resource><resourceDesc>Bản tin dài</resourceDesc><mimeType>audio/mpeg</mimeType>"
           f"<derefUri>{base64.b64encode(audio).decode()}</derefUri></resource>")
    body = cap_xml("L1", resource=res)
    assert 150_000 < len(body) < MAX_CAP_BYTES
    status, answer = await post_cap(server, body)
    assert status == 201, answer
    alert = server.alerts.alerts[answer["alert"]["id"]]
    await alert.message_ready()
    assert alert.message is not None and alert.message.read_bytes() == audio


def _entity(i: int) -> str:
    """One level of the "billion laughs": ten of the level below."""
    body = ("&lol" + str(i - 1) + ";") * 10 if i else "&lol;" * 10
    return f'<!ENTITY lol{i} "{body}">'


async def test_malformed_and_hostile_xml_is_refused(server: LoaServer) -> None:
    status, body = await post_cap(server, b"<alert><identifier>broken")
    assert status == 400 and "malformed" in body["error"]
    xxe = (b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
           b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier>'
           b"</alert>")
    status, body = await post_cap(server, xxe)
    assert status == 400 and "unsafe" in body["error"]
    lol = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + b"".join(_entity(i).encode() for i in range(9))
           + b']><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol8;'
             b"</identifier></alert>")
    status, body = await post_cap(server, lol)
    assert status == 400 and "unsafe" in body["error"]
    big = cap_xml("BIG").replace(b"<headline>", b"<headline>" + b"x" * 300_000)
    status, body = await post_cap(server, big)
    assert status == 413 and "limit" in body["error"]
    not_cap = b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"/>'
    status, body = await post_cap(server, not_cap)
    assert status == 400 and "not a CAP" in body["error"]
    assert not server.alerts.alerts  # nothing played


async def test_a_status_msgtype_or_scope_outside_cap_1_2_is_refused_naming_the_allowed_values(
        server: LoaServer) -> None:
    for field, xml, allowed in (
            ("status", cap_xml("S1", status="Real"), "Actual, Exercise, System, Test, Draft"),
            ("msgType", cap_xml("S2", msg_type="alert"), "Alert, Update, Cancel, Ack, Error"),
            ("scope", cap_xml("S3", scope="Everyone"), "Public, Restricted, Private")):
        status, body = await post_cap(server, xml)
        assert status == 400, body
        assert f"<{field}>" in body["error"] and allowed in body["error"], body
    assert not server.alerts.alerts  # nothing played
    status, body = await post_cap(server, cap_xml("S4", status="Draft"))  # valid, not acted on
    assert status == 202 and body["result"] == "logged"
    assert body["reason"] == "status Draft, scope Public: log only"
