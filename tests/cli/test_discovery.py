"""The server is found without flags: a real ``loa serve`` in a folder of its own, and the
commands run in that folder find it (no ``LOA_URL``, the port it chose itself); ``--url`` and
``--token`` work before the subcommand and after it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from loa.cli.local_server import find, reachable
from tests.cli.shell import closed_port, environment, loa

TOKEN = "discovery-token"


async def test_the_server_of_this_folder_is_found_and_options_go_anywhere(
    tmp_path: Path,
) -> None:
    station = tmp_path / "dai-truyen-thanh"
    await asyncio.to_thread(station.mkdir)
    log = await asyncio.to_thread(open, tmp_path / "serve.log", "wb")
    serving = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loa", "serve", "--no-demo", cwd=station,
        env=environment(LOA_ADMIN_TOKEN=TOKEN, LOA_SOURCE_PASSWORD="pw",
                        LOA_LISTEN="127.0.0.1:0",  # a port of its own choosing
                        LOA_MQTT_LISTEN=f"127.0.0.1:{closed_port()}"),
        stdout=asyncio.subprocess.PIPE, stderr=log)
    log.close()
    try:
        assert serving.stdout is not None
        banner = await asyncio.wait_for(serving.stdout.readline(), 60)  # printed once listening
        url = banner.decode().split("running at ")[1].strip().rstrip("/")
        data_dir = station / "loa-data"
        assert await asyncio.to_thread(find, data_dir) == url

        here = environment(LOA_TOKEN=TOKEN)
        found = await loa("--json", "zones", env=here, cwd=station)
        assert found.code == 0, found.err
        assert [z["id"] for z in json.loads(found.out)["zones"]][:2] == ["huyen", "an-binh"]
        elsewhere = await loa("zones", env={**here, "LOA_DATA_DIR": str(data_dir)},
                              cwd=tmp_path)
        assert elsewhere.code == 0 and "Xã An Bình" in elsewhere.out, elsewhere.err

        bare = environment()  # neither LOA_URL nor LOA_TOKEN: the options say it all
        for args in (["--url", url, "--token", TOKEN, "--json", "endpoints", "list"],
                     ["endpoints", "--url", url, "--token", TOKEN, "list", "--json"],
                     ["endpoints", "list", "--json", "--url", url, "--token", TOKEN],
                     ["--token", TOKEN, "endpoints", "list", "--url", url, "--json"]):
            ran = await loa(*args, env=bare, cwd=tmp_path)
            assert ran.code == 0, (args, ran.err)
            assert len(json.loads(ran.out)["endpoints"]) == 8, args
    finally:
        serving.send_signal(signal.SIGTERM)
        await asyncio.wait_for(serving.wait(), 30)
    assert serving.returncode == 0
    # the lock file stays behind, naming a process that is gone: not a server any more
    assert await asyncio.to_thread(find, data_dir) is None


def test_a_server_listening_everywhere_is_reached_on_loopback() -> None:
    assert reachable("http://0.0.0.0:8080") == "http://127.0.0.1:8080"
    assert reachable("http://[::]:9000") == "http://[::1]:9000"
    assert reachable("http://192.0.2.7:8080") == "http://192.0.2.7:8080"
