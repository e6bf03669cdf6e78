"""TLS on the public port (issue 13: tokens and source passwords travelled in clear).

A self-signed certificate is made by the ``openssl`` CLI for each test. Real clients speak to
the server: ``curl`` to the API over HTTPS, aiohttp's client over secure WebSockets, the
``ffmpeg`` CLI pushing Icecast over TLS (RFC 2818) and listening over HTTPS, and Debian's
``ezstream`` (libshout) upgrading its plain connection with ``OPTIONS *`` (RFC 2817). What a
listener hears is decoded and checked. Without a certificate the port stays plain (the rest of
the suite).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from loa.app import LoaServer
from loa.config import Config, ConfigError, TlsConfig, apply_toml
from loa.playout.front_door import FrontProtocol, TlsSettings, server_tls_context
from loa.protocol.http import HEAD_TIMEOUT_S
from tests.audio import FFMPEG, MP3_PUSH, closed, dominant_hz, ffmpeg_push, rms
from tests.conftest import ADMIN_TOKEN, SOURCE_PASSWORD, source_sending
from tests.server.memory_transport import MemoryTransport
from tests.server.test_http_front import loop_time_moved, turns
from tests.server.test_ingest import heard_tones, two_tones
from tests.server.test_source_route import MP3, write_private

MakeServer = Callable[..., Awaitable[LoaServer]]


async def run(*cmd: str, timeout_s: float = 60) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out, err


@pytest.fixture
async def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, by openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is required: ./run test installs it from Debian")
    crt, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    code, _, err = await run(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1")
    assert code == 0, err.decode()
    return crt, key


@pytest.fixture
async def tls_server(make_server: MakeServer, cert: tuple[Path, Path]) -> LoaServer:
    return await make_server(tls=TlsConfig(str(cert[0]), str(cert[1])))


def client_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


async def api(server: LoaServer, cert: tuple[Path, Path], method: str, path: str,
              body: object = None) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.request(method, f"https://127.0.0.1:{server.port}{path}", json=body,
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            return resp.status, await resp.json()


async def test_curl_reaches_the_api_over_https(tls_server: LoaServer,
                                               cert: tuple[Path, Path]) -> None:
    url = f"https://127.0.0.1:{tls_server.port}/api/v1/status"
    code, out, err = await run("curl", "-sS", "--cacert", str(cert[0]), "-H",
                               f"Authorization: Bearer {ADMIN_TOKEN}", url)
    assert code == 0, err.decode()
    assert json.loads(out)["version"]
    # without trusting the certificate, curl refuses the server: it is TLS indeed
    code, _, err = await run("curl", "-sS", url)
    assert code == 60, err.decode()  # "SSL certificate problem: self-signed certificate"
    assert tls_server.url == f"https://127.0.0.1:{tls_server.port}"


async def test_a_plain_request_to_a_tls_port_is_told_to_upgrade(tls_server: LoaServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    writer.write(b"GET /api/v1/status HTTP/1.1\r\nHost: loa\r\n"
                 b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    await closed(writer)
    assert answer.startswith(b"HTTP/1.0 426 Upgrade Required\r\n")
    assert b"Upgrade: TLS/1.2, HTTP/1.1\r\n" in answer
    # under /api/, an error as every API error is: JSON with a message
    assert b"Content-Type: application/json" in answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "error": "cổng này dùng TLS: hãy dùng https://"}
    # in the reader's language: a browser of someone who typed http://
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: loa\r\nAccept-Language: en-GB,en;q=0.8\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    await closed(writer)
    assert answer.startswith(b"HTTP/1.0 426 Upgrade Required\r\n")
    assert answer.split(b"\r\n\r\n", 1)[1].decode() == "this port speaks TLS: use https://\n"


async def test_plain_http_may_be_allowed_beside_tls(make_server: MakeServer,
                                                    cert: tuple[Path, Path]) -> None:
    server = await make_server(tls=TlsConfig(str(cert[0]), str(cert[1]), allow_plain=True))
    for scheme, ctx in (("http", None), ("https", client_context(cert))):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx or False)) as h:
            async with h.get(f"{scheme}://127.0.0.1:{server.port}/api/v1/status",
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
                assert resp.status == 200, scheme


async def test_an_rfc2817_upgrade_serves_the_requests_inside_tls(
        tls_server: LoaServer, cert: tuple[Path, Path]) -> None:
    """libshout's probe on a raw socket: 101, the handshake on the same connection, the answer
    to the probe inside TLS (RFC 2817 §3.3), then an API request on the same connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    writer.write(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                 b"Upgrade: TLS/1.0, HTTP/1.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Upgrade: TLS/1.0, HTTP/1.1\r\n" in head and b"Connection: Upgrade\r\n" in head
    await writer.start_tls(client_context(cert), server_hostname="localhost")
    writer.write(b"GET /api/v1/zones HTTP/1.1\r\nHost: localhost\r\n"
                 b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    await closed(writer)
    options, _, api_answer = answer.partition(b"\r\n\r\n")
    assert options.startswith(b"HTTP/1.1 204 No Content\r\n") and b"keep-alive" in options
    assert b"Allow: GET, PUT, SOURCE, OPTIONS" in options
    assert api_answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300]
    assert b'"zones"' in api_answer


async def test_a_native_endpoint_listens_over_secure_websocket(
        tls_server: LoaServer, cert: tuple[Path, Path]) -> None:
    connector = aiohttp.TCPConnector(ssl=client_context(cert))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.ws_connect(f"wss://127.0.0.1:{tls_server.port}/zones/an-binh-1/ws") as ws:
            hello = await asyncio.wait_for(ws.receive_json(), 5)
            assert hello["type"] == "hello" and hello["zone"] == "an-binh-1"
            packet = await asyncio.wait_for(ws.receive_bytes(), 5)  # audio (silence: DTX)
            assert packet


async def https_pull(server: LoaServer, cert: tuple[Path, Path], zone: str,
                     seconds: float) -> np.ndarray:
    """``seconds`` of a zone's Ogg stream over HTTPS, decoded by the ffmpeg CLI (which checks
    the certificate); 48 kHz mono float32."""
    code, out, err = await run(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-tls_verify", "1", "-ca_file",
        str(cert[0]), "-i", f"https://127.0.0.1:{server.port}/zones/{zone}/stream.ogg",
        "-t", str(seconds), "-f", "f32le", "-ac", "1", "-ar", "48000", "-")
    assert code == 0, err.decode()
    return np.frombuffer(out, dtype=np.float32)


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll the server's own state (not a sleep to synchronise on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_ffmpeg_pushes_over_tls_and_a_listener_hears_it_over_https(
        tls_server: LoaServer, cert: tuple[Path, Path]) -> None:
    status, _ = await api(tls_server, cert, "POST", "/api/v1/zones/an-binh/live",
                          {"mount": "studio"})
    assert status in (200, 201)
    push = await ffmpeg_push(
        f"icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{tls_server.port}/live/studio",
        freq_hz=1000, seconds=30, codec_args=[*MP3_PUSH, "-tls", "1"])
    try:
        mount = tls_server.mounts.get("studio")
        await wait_for(lambda: source_sending(mount, 25))
        pcm = await https_pull(tls_server, cert, "an-binh-1", 2.0)
    finally:
        push.kill()
        await push.wait()
    assert len(pcm) >= 48000 * 19 // 10
    tail = pcm[len(pcm) // 4 :]  # past the join
    assert dominant_hz(tail) == pytest.approx(1000, abs=5) and rms(tail) > 0.1
    assert mount.sessions_total == 1


EZSTREAM_TLS_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<ezstream>
  <servers><server>
    <hostname>127.0.0.1</hostname><port>{port}</port>
    <user>source</user><password>{password}</password>
    <tls>Required</tls><ca_file>{ca}</ca_file>
  </server></servers>
  <streams><stream>
    <mountpoint>/live/studio</mountpoint><format>MP3</format>
  </stream></streams>
  <intakes><intake>
    <type>file</type><filename>{file}</filename><stream_once>Yes</stream_once>
  </intake></intakes>
</ezstream>
"""


async def test_ezstream_upgrades_to_tls_and_is_heard(
        tls_server: LoaServer, cert: tuple[Path, Path], tmp_path: Path) -> None:
    """libshout with TLS required: ``OPTIONS *`` with ``Upgrade: TLS/1.0`` on the plain port,
    101, the handshake, then its challenge and its source inside TLS on the same connection
    (the password never in clear); a listener over HTTPS hears the whole file."""
    ezstream = shutil.which("ezstream")
    if ezstream is None:
        pytest.fail("the ezstream command is required: ./run test installs it from Debian")
    wav = await asyncio.to_thread(two_tones, tmp_path / "show.wav", (500, 1.0), (1000, 1.0))
    show = tmp_path / "show.mp3"
    code, _, err = await run(FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(wav),
                             "-ac", "2", *MP3, str(show))
    assert code == 0, err.decode()
    config = await asyncio.to_thread(write_private, tmp_path / "ezstream.xml",
                                     EZSTREAM_TLS_CONFIG.format(
                                         port=tls_server.port, password=SOURCE_PASSWORD,
                                         ca=cert[0], file=show))
    status, _ = await api(tls_server, cert, "POST", "/api/v1/zones/an-binh/live",
                          {"mount": "studio"})
    assert status in (200, 201)
    listening = asyncio.create_task(https_pull(tls_server, cert, "an-binh-1", 5.0))
    await wait_for(lambda: sum(tls_server.engine.channels["an-binh-1"].listeners().values()) > 0)
    proc = await asyncio.create_subprocess_exec(
        ezstream, "-v", "-c", str(config), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    pcm = await listening
    seconds, order = heard_tones(pcm)
    assert seconds.get(500, 0) == pytest.approx(1.0, abs=0.1), seconds
    assert seconds.get(1000, 0) == pytest.approx(1.0, abs=0.1), seconds
    assert order.index(500) < order.index(1000)
    mount = tls_server.mounts.get("studio")
    assert mount.sessions_total == 1
    assert tls_server.counters.get("sources_refused", status="401") == 1  # the challenge


# the front door's TLS, in memory


class TlsMemoryTransport(MemoryTransport):
    """A memory transport with what asyncio's TLS protocol calls on its transport."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def _force_close(self, exc: BaseException | None) -> None:
        self.abort()
        self.lose_connection(exc if isinstance(exc, Exception) else None)


async def test_a_tls_handshake_that_never_ends_is_cut(cert: tuple[Path, Path]) -> None:
    """A slowloris on the handshake: it gets the head's deadline."""
    context = await asyncio.to_thread(server_tls_context, str(cert[0]), str(cert[1]))
    proto = FrontProtocol(lambda tr, head, rest: False, lambda: asyncio.Protocol(),
                          tls=TlsSettings(context))
    tr = TlsMemoryTransport(proto)
    proto.connection_made(tr)  # type: ignore[arg-type]
    proto.data_received(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, no more
    assert tr.protocol is not proto  # the TLS protocol has the connection
    with loop_time_moved(HEAD_TIMEOUT_S - 0.5):
        await turns()
    assert not tr.closed
    with loop_time_moved(HEAD_TIMEOUT_S + 0.01):
        await turns()
    assert tr.closed


async def test_tls_is_read_from_the_config(tmp_path: Path) -> None:
    cfg = apply_toml(Config(), {"tls": {"cert_file": "/etc/loa/c.pem",
                                        "key_file": "/etc/loa/k.pem"}})
    assert cfg.tls == TlsConfig("/etc/loa/c.pem", "/etc/loa/k.pem", False) and cfg.tls.enabled
    assert not Config().tls.enabled
    with pytest.raises(ConfigError, match="key_file needs a cert_file"):
        apply_toml(Config(), {"tls": {"key_file": "/etc/loa/k.pem"}})
    with pytest.raises(OSError, match="cannot use the TLS certificate .*missing.pem"):
        await asyncio.to_thread(server_tls_context, str(tmp_path / "missing.pem"))
