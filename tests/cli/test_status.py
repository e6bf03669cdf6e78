"""``loa status`` and ``loa alarms``: the server at a glance in the engineer's language, the
newest alarms with a pointer to the rest, every alarm listed, and ``--check``'s exit status
for a monitoring script; and what ``loa endpoints import`` says it did."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from loa.app import LoaServer
from loa.cli.status import CHECK_FAILED, STATUS_ALARMS_SHOWN
from loa.config import AlarmConfig
from tests.api.accounts import add_user, token_of
from tests.cli.shell import loa, server_env


async def test_status_and_alarms_say_what_stands_in_the_callers_scope(
        make_server: Callable[..., Awaitable[LoaServer]]) -> None:
    # (a loop running late on a busy machine raises no alarm of its own here)
    server = await make_server(alarms=AlarmConfig(offline_minutes=0, hold_s=0,
                                                  loop_lag_ms=60_000))
    await asyncio.wait_for(server.fleet.connected.wait(), 10)  # no broker_down either
    rows = "".join(f"xa-{i:02d},Cụm loa {i},phu-my-1\n" for i in range(15))
    assert not (await server.endpoints.import_csv(("id,name,zone\n" + rows).encode())).errors
    await server.check_alarms()  # every endpoint was never seen: offline, held for no time
    total = len(server.endpoints.endpoints)
    env = server_env(server)

    said = await loa("status", env=env)
    assert said.code == 0, said.err
    assert "Cụm loa trực tuyến" in said.out and f"0 trên {total}" in said.out
    assert f"Sự cố đang diễn ra: {total}" in said.out
    offline = [line for line in said.out.splitlines() if line.startswith("Cụm loa mất")]
    assert len(offline) == STATUS_ALARMS_SHOWN  # the newest; the rest named, not shown
    assert f"… và {total - STATUS_ALARMS_SHOWN} sự cố nữa: lệnh loa alarms --limit 0" in said.out

    listed = await loa("alarms", env=env)
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()[1:]  # under the header
    assert len(lines) == total and all(line.startswith("Cụm loa mất kết nối") for line in lines)
    assert {word for line in lines for word in line.split()} >= set(server.endpoints.endpoints)

    checked = await loa("status", "--check", env={**env, "LANGUAGE": "en"})
    assert checked.code == CHECK_FAILED and f"Active alarms: {total}" in checked.out

    # a commune's operator: their commune's endpoints and alarms only
    await add_user(server, "op", "operator", "an-binh")
    theirs = [e.id for e in server.endpoints.endpoints.values() if e.zone_id.startswith("an-binh")]
    op = {**env, "LOA_TOKEN": (await token_of(server, "op"))["Authorization"].split()[1]}
    said = await loa("status", env=op)
    assert said.code == 0, said.err
    assert f"0 trên {len(theirs)}" in said.out and f"Sự cố đang diễn ra: {len(theirs)}" in said.out
    assert "xa-" not in said.out

    for ep in list(server.endpoints.endpoints):
        server.endpoints.remove(ep)
    await server.check_alarms()
    calm = await loa("status", "--check", env=env)
    assert calm.code == 0 and "Sự cố đang diễn ra: 0" in calm.out
    assert (await loa("alarms", env=env)).out == "Không có sự cố nào đang diễn ra.\n"


async def test_an_import_says_what_it_did_and_hands_over_the_new_logins(
        server: LoaServer, tmp_path: Path) -> None:
    """``loa endpoints import``: the new endpoints' logins as CSV on stdout (to keep), and on
    stderr how many were added and updated; a second import of the same file adds none."""
    rows = "id,name,zone\n" + "".join(f"xa-{i},Cụm loa {i},phu-my-1\n" for i in range(3))
    (tmp_path / "ds.csv").write_text(rows, encoding="utf-8")
    env = server_env(server)
    first = await loa("endpoints", "import", "ds.csv", env=env, cwd=tmp_path)
    assert first.code == 0, first.err
    logins = first.out.splitlines()
    assert logins[0] == "id,username,password,client_id,topic_root" and len(logins) == 4
    assert "Đã nhập: 3 cụm loa mới, 0 cụm loa được cập nhật." in first.err
    again = await loa("endpoints", "import", "ds.csv", env=env, cwd=tmp_path)
    assert again.code == 0 and again.out.splitlines() == logins[:1]
    assert "Đã nhập: 0 cụm loa mới, 3 cụm loa được cập nhật." in again.err
    # a dry run says what a changed file would do, and does nothing
    moved = rows.replace("xa-1,Cụm loa 1,phu-my-1", "xa-1,Loa chợ,phu-my-2") + "xa-9,,an-binh-1\n"
    (tmp_path / "ds2.csv").write_text(moved, encoding="utf-8")
    dry = await loa("endpoints", "import", "ds2.csv", "--dry-run", env=env, cwd=tmp_path)
    assert dry.code == 0, dry.err
    assert "Chưa làm gì (chạy thử). Lần nhập này sẽ thêm 1 cụm loa và sửa 1 cụm loa." in dry.out
    assert "xa-9" in dry.out and "name: Cụm loa 1 → Loa chợ" in dry.out
    assert "zone: phu-my-1 → phu-my-2" in dry.out
    assert "xa-9" not in server.endpoints.endpoints
    assert server.endpoints.get("xa-1").zone_id == "phu-my-1"
