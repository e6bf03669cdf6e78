"""``loa status`` and ``loa alarms``: the server at a glance in the engineer's language, the
newest alarms with a pointer to the rest, every alarm listed, and ``--check``'s exit status
for a monitoring script."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

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
    assert f"… và {total - STATUS_ALARMS_SHOWN} sự cố nữa: lệnh loa alarms" in said.out

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
