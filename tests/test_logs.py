"""Log lines outside input cannot forge (issue 13: a %0a in what a client sends wrote a
forged log line): a real `loa serve`, its stderr read back."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
from pathlib import Path

import aiohttp

from loa.core.logs import SafeFormatter, escape_controls
from loa.loadtest.target import LocalLoa

FORGED = "2026-11-30 06:00:00,000 ERROR loa: FORGED an administrator logged in"


def test_control_characters_are_escaped_and_tracebacks_kept() -> None:
    assert escape_controls("a\r\nb\x1b[31mc\u2028d\x7f") == "a\\r\\nb\\x1b[31mc\\u2028d\\x7f"
    assert escape_controls("Bản tin sáng") == "Bản tin sáng"
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("loa", logging.ERROR, __file__, 1, "song %s", ("x\ny",),
                                   exc_info=True)
        record.exc_info = sys.exc_info()
    text = SafeFormatter("%(levelname)s %(message)s").format(record)
    first, *rest = text.splitlines()
    assert first == "ERROR song x\\ny" and rest[0].startswith("Traceback")


async def test_a_song_title_with_a_newline_writes_one_log_line() -> None:
    server = LocalLoa(token="t", source_password="pw", demo=False)
    await server.start()
    try:
        auth = {"Authorization": "Bearer t"}
        source = {"Authorization": "Basic " + base64.b64encode(b"source:pw").decode()}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/api/v1/zones/huyen/live", json={},
                                 headers=auth) as resp:
                assert resp.status == 201
            async with http.get(f"{server.url}/admin/metadata", headers=source, params={
                    "mount": "/live/studio", "mode": "updinfo",
                    "song": f"Bản tin\n{FORGED}"}) as resp:
                assert resp.status == 200
        text = await asyncio.to_thread(Path(server.log_path).read_text)
    finally:
        await server.stop()
    lines = text.splitlines()
    assert not any(line.startswith(FORGED) for line in lines), text
    # the title itself is kept to one line of text (control characters become spaces)
    assert any("now playing: Bản tin 2026-11-30" in line for line in lines), text
