"""What a load test or benchmark runs against: a server process it starts (or is given), and
the live source it feeds. Everything binds to loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

CLK_TCK = os.sysconf("SC_CLK_TCK")
# util-linux's setpriv sets the parent-death signal and execs the command: the spawn keeps
# Python's vfork path (a Python hook run in the child forces a full fork of this process,
# which held the event loop 20 ms when the test process was large).
SETPRIV = shutil.which("setpriv")


def with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` made to get SIGTERM when its parent thread dies (Linux, ``setpriv
    --pdeathsig``), so a load test that is killed does not leave its server or source
    running. Spawn it from a thread that lives as long as the child (the event loop's):
    the signal follows the thread that forked. Without setpriv, ``argv`` as it is."""
    return ([SETPRIV, "--pdeathsig", "TERM", "--", *argv] if SETPRIV else list(argv))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ProcSample:
    cpu_s: float
    rss_kb: int


def sample_proc(pid: int) -> ProcSample | None:
    """CPU seconds (user + system) and RSS of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None
    return ProcSample((int(fields[11]) + int(fields[12])) / CLK_TCK, rss)


async def stop_process(proc: asyncio.subprocess.Process | None, grace_s: float = 10.0) -> None:
    """SIGTERM, a grace period for an orderly shutdown, then SIGKILL."""
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


class LocalLoa:
    """``loa serve`` in a child process on a free loopback port, with known credentials."""

    def __init__(self, token: str = "loadtest", source_password: str = "loadtest",
                 demo: bool = True, extra_env: dict[str, str] | None = None,
                 config_toml: str | None = None) -> None:
        self.token = token
        self.source_password = source_password
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._demo = demo
        self._env = extra_env or {}
        self._dir = tempfile.mkdtemp(prefix="loa-loadtest-")
        self.data_dir = os.path.join(self._dir, "data")  # its media folder: data_dir/media
        self.log_path = os.path.join(self._dir, "serve.log")  # its stderr (gone after stop)
        self._config: str | None = None
        if config_toml is not None:
            self._config = os.path.join(self._dir, "loa.toml")
            with open(self._config, "w") as f:
                f.write(config_toml)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        # its embedded MQTT broker on a free port too: beside another server, or a second run
        env = dict(os.environ, LOA_ADMIN_TOKEN=self.token, LOA_SOURCE_PASSWORD=self.source_password,
                   LOA_DATA_DIR=self.data_dir, LOA_MQTT_LISTEN=f"127.0.0.1:{free_port()}",
                   **self._env)
        args = [sys.executable, "-m", "loa", "serve", "--listen", f"127.0.0.1:{self.port}"]
        if not self._demo:
            args.append("--no-demo")
        if self._config:
            args += ["--config", self._config]
        log_file = await asyncio.to_thread(open, self.log_path, "wb")
        self.proc = await asyncio.create_subprocess_exec(
            *with_parent(args), env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
        log_file.close()  # the server has its own copy
        try:
            await wait_ready(self.url, self.token)
        except RuntimeError as exc:  # say why: the server's last words
            tail = await asyncio.to_thread(_tail, self.log_path)
            raise RuntimeError(f"{exc}; its log ends:\n{tail}") from None

    async def stop(self) -> None:
        await stop_process(self.proc)
        # its media folder can hold a long recording: removing it is disk work
        await asyncio.to_thread(shutil.rmtree, self._dir, ignore_errors=True)


async def wait_ready(url: str, token: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/api/v1/status",
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise RuntimeError(f"server at {url} did not come up in {timeout_s:.0f} s")
            await asyncio.sleep(0.1)  # polling a starting process; bounded by the deadline


def zone_tree_toml(villages: int, per_commune: int = 4,
                   endpoints: Sequence[tuple[str, str]] = (),
                   village_codes: bool = False) -> str:
    """A district of ``villages`` leaf zones, ``per_commune`` to a commune.

    ``endpoints``: (id, zone) of endpoints to register (else none: the load test's endpoints
    listen by zone). ``village_codes``: villages get an administrative code too (their
    commune's, a dash and their number, e.g. ``00002-07``), so a CAP geocode can name them.
    """
    lines = ([] if endpoints else ["endpoints = []  # the load test's endpoints listen by zone\n"])
    lines.append('[[zones]]\nid = "huyen"\nname = "Huyện thử tải"\nadmin_code = "000"\n')
    communes = -(-villages // per_commune)
    for c in range(communes):
        lines.append(f'[[zones]]\nid = "xa-{c + 1:02d}"\nname = "Xã {c + 1}"\n'
                     f'parent = "huyen"\nadmin_code = "{c + 1:05d}"\n')
    for v in range(villages):
        code = (f'admin_code = "{village_admin_code(v + 1, per_commune)}"\n'
                if village_codes else "")
        lines.append(f'[[zones]]\nid = "thon-{v + 1:02d}"\nname = "Thôn {v + 1}"\n'
                     f'parent = "xa-{v // per_commune + 1:02d}"\n{code}')
    for eid, zone in endpoints:
        lines.append(f'[[endpoints]]\nid = "{eid}"\nzone = "{zone}"\n')
    return "\n".join(lines)


def village_admin_code(village: int, per_commune: int = 4) -> str:
    """The code ``zone_tree_toml(..., village_codes=True)`` gives village ``village`` (1-based)."""
    return f"{(village - 1) // per_commune + 1:05d}-{village:02d}"


class FfmpegSource:
    """The station going live: the ffmpeg CLI pushing a tone Icecast-style, in real time."""

    def __init__(self, url: str, freq_hz: float = 1000.0, codec: str = "mp3") -> None:
        self.url = url
        self.freq_hz = freq_hz
        self.codec = codec
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if self.codec == "mp3":
            enc = ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", "-content_type",
                   "audio/mpeg"]
        else:
            enc = ["-c:a", "libopus", "-b:a", "32k", "-ac", "1", "-page_duration", "20000",
                   "-f", "ogg", "-content_type", "audio/ogg"]
        self.proc = await asyncio.create_subprocess_exec(
            *with_parent(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
                          "-i", f"sine=frequency={self.freq_hz}:sample_rate=44100", "-ac", "2",
                          *enc, self.url]),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _tail(path: str, max_bytes: int = 1500) -> str:
    """The end of a log file (blocking)."""
    try:
        with open(path, "rb") as f:
            return f.read()[-max_bytes:].decode(errors="replace").strip()
    except OSError as exc:
        return f"(no log: {exc})"
