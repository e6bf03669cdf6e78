"""The endpoint registry: API, CLI, CSV import, credentials, persistence."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import aiomqtt

from loa.app import LoaServer
from loa.protocol.credentials import verify_password
from tests.conftest import run_cli
from tests.fleet.test_mqtt import broker_address
from tests.server.test_api import auth, base, call


async def post_csv(server: LoaServer, text: str, accept: str = "application/json"
                   ) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/endpoints.csv", data=text.encode(),
                             headers={**auth(), "Accept": accept}) as resp:
            return resp.status, await resp.text()


async def test_endpoints_are_created_updated_moved_deleted_and_kept(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    server = await make_server()
    status, body = await call(server, "POST", "/api/v1/endpoints", json={
        "id": "loa-101", "zone": "phu-my-2", "name": "Cụm loa chợ", "lat": 15.61,
        "lon": 108.11, "address": "Chợ Phú Mỹ", "admin_code": "20551"})
    assert status == 201, body
    login = body["mqtt"]
    assert login["username"] == "loa-101" and len(login["password"]) >= 20
    ep = server.endpoints.get("loa-101")
    assert verify_password(login["password"], ep.secret_hash)
    await server.store.flush()  # writes are queued to the store's thread
    kept = await asyncio.to_thread(lambda: b"".join(
        p.read_bytes() for p in Path(server.config.data_dir).rglob("*") if p.is_file()))
    assert "Chợ Phú Mỹ".encode() in kept  # the registry is on disk
    assert login["password"].encode() not in kept  # its password is not, only its hash
    # the device logs in to the broker with what it was given
    host, port = broker_address(server)
    async with aiomqtt.Client(host, port, username="loa-101", password=login["password"],
                              identifier="loa-101"):
        pass
    for bad, why in (({"id": "loa-101", "zone": "phu-my-2"}, 409),
                     ({"id": "bad id!", "zone": "phu-my-2"}, 400),
                     ({"id": "loa-102", "zone": "nowhere"}, 400),
                     ({"id": "loa-102", "zone": "phu-my", "lat": 123}, 400)):
        status, body = await call(server, "POST", "/api/v1/endpoints", json=bad)
        assert status == why, (bad, body)
    # one bad field and nothing is taken: not the good name beside it either
    status, body = await call(server, "PATCH", "/api/v1/endpoints/loa-101",
                              json={"name": "Tên mới", "lat": 123})
    assert status == 400 and "lat" in body["error"], body
    status, body = await call(server, "GET", "/api/v1/endpoints/loa-101")
    assert status == 200 and body["endpoint"]["name"] == "Cụm loa chợ", body
    status, body = await call(server, "PATCH", "/api/v1/endpoints/loa-101",
                              json={"zone": "an-binh-1", "address": "Nhà văn hoá"})
    assert status == 200 and body["endpoint"]["zone"] == "an-binh-1"
    moves = [c for c in server.fleet.commands.values() if c.op.value == "move"]
    assert moves and moves[-1].args["zone"] == "an-binh-1"  # the device is told
    status, body = await call(server, "POST", "/api/v1/endpoints/loa-101/credentials")
    assert status == 200
    assert not verify_password(login["password"], server.endpoints.get("loa-101").secret_hash)
    status, body = await call(server, "DELETE", "/api/v1/endpoints/loa-005")
    assert status == 200

    # a restart keeps the registry as it was left (the deleted config endpoint stays gone)
    from loa.app import LoaServer as Server

    await server.stop()
    again = Server(server.config)
    try:
        ep = again.endpoints.get("loa-101")
        assert (ep.zone_id, ep.address, ep.admin_code) == ("an-binh-1", "Nhà văn hoá", "20551")
        assert "loa-005" not in again.endpoints.endpoints
    finally:
        again.store.close()


async def test_csv_import_is_all_or_nothing_and_gives_each_new_endpoint_a_password(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    server = await make_server()
    bad = ("id,name,zone,lat,lon,address,admin_code\n"
           "xa-01,Cụm 1,an-binh-1,15.5,108.0,Thôn 1,20551\n"
           "xa-02,Cụm 2,nowhere,,,,\n"
           "xa-01,Again,an-binh-1,,,,\n"
           "xa-03,Cụm 3,phu-my-1,north,108,,\n")
    status, text = await post_csv(server, bad)
    assert status == 400
    errors = __import__("json").loads(text)["errors"]
    assert [e["line"] for e in errors] == [3, 4, 5]
    assert "xa-01" not in server.endpoints.endpoints  # nothing taken
    good = ("\ufeffid,name,zone,lat,lon,address,admin_code\n"
            "xa-01,Cụm 1,an-binh-1,15.5,108.0,Thôn 1,20551\n"
            "xa-02,Cụm 2,an-binh-2,,,,\n"
            "loa-001,Cụm loa đổi tên,phu-my-1,,,,\n"
            ",,,,,,\n")
    status, text = await post_csv(server, good, accept="text/csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == ["xa-01", "xa-02"]  # passwords for the new ones only
    for r in rows:
        assert verify_password(r["password"], server.endpoints.get(r["id"]).secret_hash)
    moved = server.endpoints.get("loa-001")
    assert (moved.name, moved.zone_id) == ("Cụm loa đổi tên", "phu-my-1")
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/api/v1/endpoints.csv", headers=auth()) as resp:
            exported = list(csv.DictReader(io.StringIO(await resp.text())))
    assert {"xa-01", "xa-02", "loa-001"} <= {r["id"] for r in exported}
    status, text = await post_csv(server, "name,zone\nx,y\n")
    assert status == 400 and "header" in text


async def test_a_csv_of_a_thousand_endpoints_is_taken_whole_with_a_password_each(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    """Parsing and hashing 1,000 passwords run beside the loop (the loop watchdog fails any
    step over 20 ms); the registry takes the lot in one step and the store in one write."""
    server = await make_server()
    villages = ("an-binh-1", "an-binh-2", "phu-my-1", "phu-my-2")
    lines = ["id,name,zone,lat,lon,address,admin_code"]
    lines += [f"xa-{i:04d},Cụm loa {i},{villages[i % 4]},15.{i:04d},108.1,Thôn {i % 4},2055{i % 10}"
              for i in range(1000)]
    lines.append("loa-001,Cụm loa chợ,phu-my-2,,,,")  # an existing one: updated, moved
    status, text = await post_csv(server, "\n".join(lines) + "\n", accept="text/csv")
    assert status == 200, text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [f"xa-{i:04d}" for i in range(1000)]
    assert len({r["password"] for r in rows}) == 1000
    hashes = {r["id"]: server.endpoints.get(r["id"]).secret_hash for r in rows}

    def all_verify() -> bool:
        return all(verify_password(r["password"], hashes[r["id"]]) for r in rows)

    assert await asyncio.to_thread(all_verify)
    assert server.endpoints.get("xa-0999").zone_id == "phu-my-2"
    moved = server.endpoints.get("loa-001")
    assert (moved.name, moved.zone_id) == ("Cụm loa chợ", "phu-my-2")
    await server.store.flush()
    saved = {r["id"]: r for r in await asyncio.to_thread(server.store.load_endpoints)}
    assert len(saved) >= 1001 and saved["xa-0500"]["secret_hash"] == hashes["xa-0500"]
    assert saved["loa-001"]["zone"] == "phu-my-2"


async def test_the_cli_adds_lists_commands_reports_and_removes(
    make_server: Callable[..., Awaitable[LoaServer]], tmp_path: Path,
) -> None:
    server = await make_server()
    code, out = await run_cli(server, "endpoints", "add", "loa-201", "--zone", "phu-my-1",
                              "--name", "Cụm loa đình", "--admin-code", "20554")
    assert code == 0 and out["mqtt"]["username"] == "loa-201"
    code, out = await run_cli(server, "endpoints", "list", "--zone", "phu-my-1")
    assert code == 0
    assert {e["id"] for e in out["endpoints"]} == {"loa-005", "loa-006", "loa-201"}
    assert all(e["presence"]["online"] is False for e in out["endpoints"])
    code, out = await run_cli(server, "command", "--zone", "phu-my", "volume", "45")
    assert code == 0 and len(out["commands"]) == 5
    assert all(c["status"] == "pending" for c in out["commands"])  # all offline: they wait
    assert server.zones.get("phu-my-2").volume_pct == 45
    code, out = await run_cli(server, "command", "--zone", "phu-my", "volume", "150")
    assert code == 1 and "0 to 100" in out["error"]
    code, out = await run_cli(server, "report", "phu-my", "--year", "2026")
    assert code == 0 and out["commune"]["id"] == "phu-my"
    code, out = await run_cli(server, "endpoints", "rm", "loa-201")
    assert code == 0 and "loa-201" not in server.endpoints.endpoints
    code, out = await run_cli(server, "endpoints", "rm", "loa-201")
    assert code == 1
    (tmp_path / "fleet.csv").write_text("id,zone\nxa-09,an-binh-2\n")
    proc = await asyncio.create_subprocess_exec(
        __import__("sys").executable, "-m", "loa", "endpoints", "--url",
        f"http://127.0.0.1:{server.port}", "--token", "test-admin-token", "import",
        str(tmp_path / "fleet.csv"), stdout=asyncio.subprocess.PIPE)
    text, _ = await proc.communicate()
    assert proc.returncode == 0
    assert text.decode().startswith("id,username,password") and "xa-09" in text.decode()


def test_the_shipped_mosquitto_acl_example_is_what_loa_generates() -> None:
    from loa.protocol.credentials import mosquitto_acl

    def rules(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]

    example = (Path(__file__).parents[2] / "docs" / "mosquitto-acl.example").read_text()
    assert rules(example) == rules(mosquitto_acl("loa", "loa-server"))
