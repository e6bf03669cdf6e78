"""``loa live`` takes zones for a live mount and gives them back; ``loa commands <batch>``
shows, endpoint by endpoint, which acknowledged a command, which wait for it and which refused
it (endpoints online over MQTT, one of them a firmware that refuses)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from loa.app import LoaServer
from loa.loadtest.mqtt_endpoint import MqttEndpoint
from loa.protocol.mqtt import Kind, encode, publish_nowait
from tests.cli.shell import loa, server_env
from tests.fleet.test_mqtt import broker_address, login


def live_zones(server: LoaServer) -> dict[str, int]:
    return {r.zone_id: r.priority for r in server.engine.requests.values()
            if r.label == "live/studio"}


async def test_live_takes_zones_for_a_mount_and_release_gives_them_back(
    server: LoaServer,
) -> None:
    env = server_env(server)
    taken = await loa("live", "an-binh,phu-my-1", "--mount", "studio", env=env)
    assert taken.code == 0, taken.err
    assert live_zones(server) == {"an-binh": 80, "phu-my-1": 80}
    lines = taken.out.splitlines()
    assert lines[0].split() == ["VÙNG", "ĐIỂM", "PHÁT", "ƯU", "TIÊN", "YÊU", "CẦU", "NGUỒN"]
    [req_id] = [r.id for r in server.engine.requests.values()
                if r.zone_id == "an-binh" and r.label == "live/studio"]  # ids are per process
    assert lines[1].split() == ["an-binh", "(Xã", "An", "Bình)", "studio", "80", str(req_id),
                                "(mới)", "đang", "chờ", "nguồn"]
    assert lines[-1].startswith("Chưa có nguồn nào đẩy tới điểm phát này")
    # the zones say it too: taken, waiting for its source (a new user took a zone whose
    # source had gone for one given back)
    zones = await loa("zones", env={**env, "LANG": "en_US.UTF-8"})
    rows = {line.split()[0]: line for line in zones.out.splitlines()[1:] if line.strip()}
    assert "live/studio [80]" in rows["an-binh"] and "live/studio [80]" in rows["phu-my-1"]
    assert "live/studio" not in rows["phu-my"]
    assert "WAITING FOR ITS SOURCE" in zones.out.splitlines()[0]
    listed = json.loads((await loa("--json", "zones", env=env)).out)
    waiting = {z["id"]: [r["label"] for r in z["waiting"]] for z in listed["zones"]}
    assert waiting["an-binh"] == ["live/studio"] and waiting["huyen"] == []

    again = await loa("live", "phu-my-1", "--json", env=env)  # the same request again: 200
    answer = json.loads(again.out)
    assert list(answer) == ["phu-my-1"]
    assert answer["phu-my-1"]["request"]["zone"] == "phu-my-1"
    assert answer["phu-my-1"]["request"]["label"] == "live/studio"

    released = await loa("live", "--release", "an-binh", "phu-my-1", env=env)
    assert released.code == 0, released.err
    assert live_zones(server) == {}
    assert released.out.splitlines()[1].startswith("an-binh (Xã An Bình)")
    nothing = await loa("live", "--release", "phu-my-2", env={**env, "LANG": "en_US.UTF-8"})
    assert "phu-my-2 (Thôn Phú Mỹ 2)  nothing was live" in nothing.out


class RefusingEndpoint(MqttEndpoint):
    """A firmware that refuses every command (its amplifier is broken)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, ack=False, **kwargs)
        self.on_command = self.refuse

    def refuse(self, cmd: dict[str, Any]) -> None:
        assert self.client is not None
        publish_nowait(self.client, self.topics.topic(self.id, Kind.ACK),
                       encode({"id": cmd["id"], "ok": False, "error": "amplifier fault"}))


async def test_commands_shows_who_acknowledged_who_waits_and_who_failed(
    server: LoaServer,
) -> None:
    await asyncio.wait_for(server.fleet.connected.wait(), 10)
    host, port = broker_address(server)
    root = server.fleet.topics.root
    good = MqttEndpoint("loa-001", await login(server, "loa-001"), host, port,
                        topic_root=root, telemetry_s=3600)
    broken = RefusingEndpoint("loa-002", await login(server, "loa-002"), host, port,
                              topic_root=root, telemetry_s=3600)
    stop = asyncio.Event()
    running = [asyncio.create_task(ep.run(stop)) for ep in (good, broken)]
    try:
        await server.fleet.until(lambda: all(server.fleet.is_online(e)
                                             for e in ("loa-001", "loa-002")))
        env = server_env(server)
        sent = await loa("command", "--zone", "an-binh", "volume", "55", env=env)
        assert sent.code == 0, sent.err
        batch = list(server.fleet.commands.values())[-1].batch
        assert sent.out.splitlines()[0] == (
            f"Đã gửi lệnh âm lượng 55% tới 4 cụm loa của vùng an-binh (Xã An Bình): lô lệnh "
            f"{batch}.")
        assert sent.out.splitlines()[-1] == f"Theo dõi kết quả: loa commands {batch}"
        await server.fleet.until(lambda: {c.endpoint_id: c.status.value
                                          for c in server.fleet.batch(batch)}
                                 == {"loa-001": "acked", "loa-002": "failed",
                                     "loa-003": "pending", "loa-004": "pending"})
    finally:
        stop.set()
        await asyncio.wait(running, timeout=5)

    shown = await loa("commands", batch, env=env)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0] == f"Lô lệnh {batch}: âm lượng 55% tới 4 cụm loa."
    assert lines[1].startswith("đã xác nhận 1 · đang chờ 2 · thất bại 1  (xác nhận sau p50 ")
    rows = {line.split()[0]: line for line in lines[3:]}
    assert list(rows) == ["loa-002", "loa-003", "loa-004", "loa-001"]  # failures first
    assert "(Cụm loa 2)" in rows["loa-002"] and "thất bại" in rows["loa-002"]
    assert rows["loa-002"].endswith("amplifier fault")
    assert "đang chờ" in rows["loa-003"] and "đã xác nhận" in rows["loa-001"]

    english = await loa("commands", batch, env={**env, "LANG": "en_US.UTF-8"})
    assert english.out.splitlines()[0] == f"Batch {batch}: volume 55% to 4 endpoints."
    assert english.out.splitlines()[1].startswith("acknowledged 1 · pending 2 · failed 1")
    scripted = await loa("commands", batch, "--json", env=env)
    assert json.loads(scripted.out)["summary"] == {"acked": 1, "failed": 1, "pending": 2}
    unknown = await loa("commands", "nope", env=env)
    assert unknown.code == 1 and "không có lệnh nào cho nope" in unknown.err


async def test_live_on_a_zone_outside_the_scope_says_so_and_what_to_do(
    server: LoaServer,
) -> None:
    """A commune operator's zone list holds only their commune: another commune's zone is
    refused as outside their scope (in their language), not reported as no zone at all."""
    from tests.api.accounts import add_user, token_of

    await add_user(server, "op-an-binh", "operator", "an-binh")
    token = (await token_of(server, "op-an-binh"))["Authorization"].split()[1]
    env = {**server_env(server), "LOA_TOKEN": token}
    refused = await loa("live", "phu-my-1", env=env)
    assert refused.code == 1
    assert "phu-my-1" in refused.err and "an-binh" in refused.err
    assert "Không có vùng" not in refused.err  # not "there is no zone"
    assert "Tài khoản của bạn chỉ thao tác trên các vùng thuộc an-binh" in refused.err
    assert live_zones(server) == {}

    english = await loa("live", "phu-my-1", "an-binh", env={**env, "LANG": "en_US.UTF-8"})
    assert english.code == 1 and live_zones(server) == {}  # none is touched
    assert "zone 'phu-my-1' is outside your scope (an-binh)" in english.err
    assert "Your account acts only on the zones under an-binh" in english.err
    unknown = await loa("live", "phu-myy-1", env={**env, "LANG": "en_US.UTF-8"})
    assert unknown.code == 1 and "There is no zone 'phu-myy-1'" in unknown.err


async def test_a_refusal_of_the_scope_is_said_once(server: LoaServer) -> None:
    """Every command that names a zone outside the caller's scope says the server's refusal
    once (not again from a second look at the zone), with one ``loa <command>:`` prefix;
    with ``--json`` the refusal's JSON is on stdout, for ``live`` too."""
    from tests.api.accounts import add_user, token_of

    await add_user(server, "op-an-binh", ["operator", "alert"], "an-binh")
    token = (await token_of(server, "op-an-binh"))["Authorization"].split()[1]
    env = {**server_env(server), "LOA_TOKEN": token}
    refusal = "máy chủ từ chối (403): vùng '{zone}' nằm ngoài phạm vi của bạn (an-binh)"
    hint = ("Tài khoản của bạn chỉ thao tác trên các vùng thuộc an-binh: một quản trị viên có "
            "phạm vi bao gồm vùng này có thể làm việc đó, hoặc mở rộng phạm vi cho bạn.")
    for zone, args in [
        ("phu-my-1", ["alert", "--zones", "phu-my-1", "--text", "Thử"]),
        ("phu-my", ["report", "phu-my", "--year", "2026"]),
        ("phu-my", ["command", "--zone", "phu-my", "volume", "50"]),
        ("phu-my", ["schedule", "add", "--zones", "phu-my", "--start", "2030-01-01T06:00",
                    "--duration", "30m", "--text", "Thử"]),
        ("phu-my", ["endpoints", "list", "--zone", "phu-my"]),
        ("phu-my-1", ["live", "phu-my-1"]),
        ("phu-my-1", ["live", "--release", "phu-my-1"]),
    ]:
        ran = await loa(*args, env=env)
        assert ran.code == 1 and ran.out == "", (args, ran.out)
        assert ran.err == f"loa {args[0]}: {refusal.format(zone=zone)}\n{hint}\n", (args, ran.err)
    # a command that needs another right: that refusal alone, not the scope's as well
    ran = await loa("endpoints", "add", "loa-999", "--zone", "phu-my-1", env=env)
    assert ran.code == 1 and ran.err.count("máy chủ từ chối") == 1 and "phạm vi" not in ran.err
    assert "Vai trò của bạn không có quyền quản trị" in ran.err  # the right in words
    for args in (["--json", "live", "phu-my"], ["--json", "alert", "--zones", "phu-my",
                                                "--text", "Thử"]):
        ran = await loa(*args, env=env)
        assert ran.code == 1 and ran.err == "", (args, ran.err)
        assert json.loads(ran.out) == {"error": "vùng 'phu-my' nằm ngoài phạm vi của bạn "
                                                "(an-binh)", "refused": "scope",
                                       "scope": "an-binh"}
    assert live_zones(server) == {} and not server.alerts.alerts
