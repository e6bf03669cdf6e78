"""What the API says to people (review of issue 14), through the real server: rights named in
the reader's language, an endpoint's presence and the first admin's name through the
catalogue, an upload that is not audio refused by its own name (no server path, no errno),
times of the logs as ISO 8601 too, an alert's uploaded message listed by its file name and a
schedule item's library item by its title."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from loa.app import LoaServer
from loa.core.clock import STATION_TZ
from tests.api.accounts import add_user, token_of, upload_as
from tests.api.test_accounts import tomorrow
from tests.audio import tone_file
from tests.conftest import auth
from tests.server.test_api import call
from tests.server.test_ingest import base


def vi(headers: dict[str, str]) -> dict[str, str]:
    """The same credentials, asking for Vietnamese."""
    return {**headers, "Accept-Language": "vi"}


async def test_rights_presence_and_the_first_admin_are_said_in_the_readers_language(
        server: LoaServer) -> None:
    await add_user(server, "xem", "viewer", "an-binh")
    await add_user(server, "op", "operator", "an-binh")
    viewer = await token_of(server, "xem")
    op = await token_of(server, "op")
    request = {"source": {"kind": "tone"}}
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/requests", json=request,
                              headers=vi(viewer))
    assert (status, body) == (403, {"error": "cần quyền vận hành", "refused": "right",
                                    "right": "operate"})
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/requests", json=request,
                              headers=viewer)
    assert body["error"] == "needs the operate right"
    status, body = await call(server, "POST", "/api/v1/alerts", headers=vi(op),
                              json={"zones": ["an-binh"], "content": {"kind": "tone"}})
    assert (status, body["error"], body["right"]) == (403, "cần quyền cảnh báo", "alert")
    status, body = await call(server, "POST", "/api/v1/users", headers=vi(op), json={})
    assert (status, body["error"]) == (403, "cần quyền quản trị")
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/requests", headers=vi(op),
                              json={**request, "priority": 100})
    assert status == 403 and "(quyền cảnh báo)" in body["error"]
    # an endpoint never heard from, in either language
    status, body = await call(server, "GET", "/api/v1/endpoints/loa-001", headers=vi(auth()))
    assert body["endpoint"]["presence"]["reason"] == "chưa liên lạc từ khi máy chủ khởi động"
    status, body = await call(server, "GET", "/api/v1/endpoints?zone=an-binh-1")
    assert {e["presence"]["reason"] for e in body["endpoints"]} == {
        "not seen since the server started"}
    # the account the first start made
    status, body = await call(server, "GET", "/api/v1/users/admin", headers=vi(auth()))
    assert body["user"]["display_name"] == "Quản trị viên"
    status, body = await call(server, "GET", "/api/v1/users")
    assert {u["username"]: u["display_name"] for u in body["users"]}["admin"] \
        == "Administrator"


async def test_an_upload_that_is_not_audio_is_refused_by_its_own_name(
        server: LoaServer, tmp_path: Path) -> None:
    fake = tmp_path / "bản-tin.mp3"
    await asyncio.to_thread(fake.write_text, "chỉ là chữ, không phải âm thanh\n" * 50)
    for language, expected in [
        ("vi", "'bản-tin.mp3' không phải là tệp âm thanh mà Loa đọc được: hãy gửi một tệp âm "
               "thanh (MP3, WAV, Ogg, FLAC, AAC hoặc M4A)"),
        ("en", "'bản-tin.mp3' is not audio Loa can read: send a sound file (MP3, WAV, Ogg, "
               "FLAC, AAC or M4A)"),
    ]:
        headers = {**auth(), "Accept-Language": language}
        status, body = await upload_as(server, headers, fake)
        assert (status, body) == (400, {"error": expected})
        form = aiohttp.FormData()
        form.add_field("spec", json.dumps({"zones": ["an-binh"]}))
        form.add_field("audio", io.BytesIO(fake.read_bytes()), filename=fake.name)
        async with aiohttp.ClientSession() as http:
            async with http.post(base(server) + "/api/v1/alerts", data=form,
                                 headers=headers) as resp:
                assert (resp.status, await resp.json()) == (400, {"error": expected})
    assert not server.alerts.alerts and not server.media.list()


async def test_an_alerts_uploaded_message_is_listed_by_its_file_name(
        server: LoaServer, tmp_path: Path) -> None:
    good = await tone_file(tmp_path / "thông-báo.mp3", 600, 1.0, ["-c:a", "libmp3lame"])
    form = aiohttp.FormData()
    form.add_field("spec", json.dumps({"zones": ["an-binh"], "class": "priority"}))
    form.add_field("audio", io.BytesIO(good.read_bytes()), filename=good.name)
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/alerts", data=form,
                             headers=auth()) as resp:
            assert resp.status == 201
            alert = (await resp.json())["alert"]
    shown = {"kind": "file", "path": "thông-báo.mp3", "name": "thông-báo.mp3"}
    assert alert["content"] == shown
    status, listed = await call(server, "GET", "/api/v1/alerts")
    assert [a["content"] for a in listed["alerts"]] == [shown]
    status, one = await call(server, "GET", f"/api/v1/alerts/{alert['id']}")
    assert one["alert"]["content"] == shown
    # what is kept is where the file lies, to play it again after a restart
    held = server.alerts.alerts[alert["id"]]
    kept = held.record()["content"]
    assert Path(kept["path"]).is_absolute() and Path(kept["path"]).parent.name == "alerts"
    # an older alert, read back from the store, is shown the same way
    assert (await call(server, "DELETE", f"/api/v1/alerts/{alert['id']}"))[0] == 200
    del server.alerts.alerts[alert["id"]]
    status, stored = await call(server, "GET", f"/api/v1/alerts/{alert['id']}")
    assert status == 200 and stored["alert"]["content"] == shown


async def test_the_logs_take_iso_times_in_station_time(server: LoaServer) -> None:
    await server.store.flush()
    server.store.audit("tester", "test.iso", "s1")
    now = datetime.now(STATION_TZ).replace(tzinfo=None, microsecond=0)

    async def audit(**query: str) -> list[str]:
        status, body = await call(server, "GET", f"/api/v1/audit?{urlencode(query)}")
        assert status == 200, body
        return [e["subject"] for e in body["audit"] if e["action"] == "test.iso"]

    earlier = (now - timedelta(minutes=5)).isoformat()
    later = (now + timedelta(minutes=5)).isoformat()
    assert await audit(since=earlier) == ["s1"]
    assert await audit(since=later) == []
    assert await audit(until=earlier) == []
    # with an offset, and a date alone (its midnight)
    utc = (datetime.now(STATION_TZ) - timedelta(minutes=5)).astimezone().isoformat()
    assert await audit(since=utc, until=later) == ["s1"]
    assert await audit(since=now.date().isoformat()) == ["s1"]
    for path in ("/api/v1/log", "/api/v1/alarms/history"):
        status, _ = await call(server, "GET", f"{path}?{urlencode({'since': earlier})}")
        assert status == 200


async def test_the_schedule_list_names_a_library_items_title(
        server: LoaServer, tmp_path: Path) -> None:
    await add_user(server, "op", "operator", "an-binh")
    mp3 = await tone_file(tmp_path / "ban-tin-sang.mp3", 500, 1.0, ["-c:a", "libmp3lame"])
    status, body = await upload_as(server, auth(), mp3)
    assert status == 201
    media_id = body["media"]["id"]
    item = {"title": "Bản tin sáng", "zones": ["an-binh"], "duration_s": 60,
            "start": tomorrow(server)}
    for content in ({"kind": "media", "id": media_id},
                    {"kind": "playlist", "items": [media_id, media_id]}):
        status, body = await call(server, "POST", "/api/v1/schedules",
                                  json={**item, "content": content})
        assert status == 201, body
    status, body = await call(server, "GET", "/api/v1/schedules",
                              headers=await token_of(server, "op"))
    assert sorted(json.dumps(s["content"], sort_keys=True) for s in body["schedules"]) \
        == sorted(json.dumps(c, sort_keys=True) for c in [
            {"kind": "media", "id": media_id, "title": "ban-tin-sang"},
            {"kind": "playlist", "items": [media_id, media_id],
             "titles": ["ban-tin-sang", "ban-tin-sang"]}])
    # the file and the calendar keep the ids alone
    assert all("title" not in i.content.to_json()
               for i in server.schedule.items.values() if i.content is not None)
