"""Loa's own MQTT broker: a Mosquitto that Loa starts, configures, feeds with the endpoints'
credentials and supervises, so ``loa serve`` needs no broker set up by hand
(``[mqtt] url = "embedded"``, the default).

Why a supervised Mosquitto and not a broker inside the process (measured 2026-11-30,
docs/benchmarks.md, "MQTT broker"): the amqtt broker Loa embedded before kept two sessions
with one client id (MQTT 3.1.1 §3.1.4-2 says the older one goes), left an MQTT 5 client
waiting for a CONNACK that never came (§3.1.2-2: CONNACK 0x01, then close), never closed a
connection that sent no CONNECT, and at 1,000 endpoints had a zone-wide volume command
acknowledged in 598 ms (median p50 of 5 runs; Mosquitto: 213-328 ms) while the server's loop
spent ~39 % of a core on it (Mosquitto: server ~11 % + broker ~4 %). Mosquitto (Debian's 2.0)
does all of that right and reads Loa's ``$7$`` hashes as they are.

What Loa gives it, in ``<data_dir>/mosquitto/`` (written beside the loop, rewritten at every
start):

- ``mosquitto.conf``: one listener on ``[mqtt] listen``, no anonymous clients, the client id
  taken from the username (one session per endpoint: a second login with the same
  credentials, a cloned device, replaces the first), its log on stderr, which comes here;
- ``passwd``: each endpoint's ``$7$`` hash from the registry, the server's own user (a password
  generated at each start) and a probe user (below);
- ``acl``: the server reads and writes the whole tree; an endpoint publishes only its own
  state, telemetry and acks and reads only its own commands (patterns on ``%u``).

A credential change in the registry (an endpoint added, a new password, a CSV import, a
removal) rewrites ``passwd`` and sends SIGHUP; Mosquitto reloads it and drops every connected
client whose login no longer holds. Each rewrite also gives the probe user a new password, so
a login with it that is accepted proves the reload done: ``synced()`` waits for that, and the
API answers with a new password (or a removal) only once it has taken effect.

Why not Mosquitto's dynamic-security plugin (it ships in Debian's package): in 2.0 its ACLs
cannot name the client (no ``%u``), so each endpoint needs a role of its own, it takes
passwords only in clear (Loa keeps hashes), and it rewrites its whole JSON file after every
command: provisioning 1,000 endpoints took 4.7 s and 2,000 took 23 s of the broker's single
thread, during which it served nobody.

Supervision: if Mosquitto dies it is started again on the same port with a back-off, counted
(``mqtt_broker_restarts``); while it is down the server's broker connection is down too, and
the fleet's ``broker_down`` alarm stands. At stop it gets SIGTERM, then SIGKILL after
``STOP_S``. It runs in a session of its own (a Ctrl-C at the terminal reaches Loa, which stops
it in its shutdown phase) and dies with Loa if Loa is killed (``setpriv --pdeathsig``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from loa.control.endpoints import EndpointRegistry
from loa.core.counters import Counters
from loa.core.i18n import N_, Explained
from loa.core.processes import Child, spawn
from loa.protocol.credentials import hash_password, mosquitto_acl, mosquitto_passwd_lines
from loa.protocol.mqtt import Topics

log = logging.getLogger(__name__)

SERVER_USER = "loa-server"
PROBE_USER = "loa@probe"  # never an endpoint's id: ids have no "@"
START_S = 10.0  # a new Mosquitto must accept Loa's login this soon
RELOAD_S = 5.0  # and a reloaded one its new probe password
STOP_S = 3.0  # SIGTERM, then SIGKILL
SYNC_S = 10.0  # synced() stops waiting after this long
RETRY_S = 5.0  # a reload that did not take is tried again this much later
RESTART_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # back-off between restarts
STABLE_S = 60.0  # running this long resets the back-off
LOG_LINES_PER_S = 20  # Mosquitto lines logged at INFO or above, per second; the rest counted
MAX_QUEUED = 20_000  # per client: the server's session takes every endpoint's ack at once
INSTALL_HINT = ("run `sudo apt-get install mosquitto` (./run installs it), or set [mqtt] url "
                "to a broker of your own")


class BrokerError(OSError):
    """Loa's own broker cannot start: Mosquitto is not installed, the port is taken, or
    Mosquitto exited or did not accept Loa's login; the message says what to do."""

    pass


class BrokerPortTaken(Explained, BrokerError):
    """The embedded broker's port is taken: said in the reader's language (``say``), with
    what to do; ``errno`` is EADDRINUSE."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(N_("MQTT port {address} is taken (another broker, such as Mosquitto, "
                            "or another Loa?): set [mqtt] url = \"mqtt://user:password@"
                            "{address}\" to use that broker, or [mqtt] listen (LOA_MQTT_LISTEN) "
                            "to another port"), address=f"{host}:{port}")
        self.errno = errno.EADDRINUSE


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What Mosquitto is started with: the texts of its config, password and ACL files."""

    conf: str
    passwd: str
    acl: str


def mosquitto_conf(host: str, port: int, folder: Path, user: str) -> str:
    """Mosquitto's config for Loa's own broker: one listener on ``host:port`` whose password
    and ACL files are ``folder/passwd`` and ``folder/acl``, running as ``user`` (Mosquitto
    started as root would otherwise switch to the user ``mosquitto``, who cannot read Loa's
    data folder), logging to stderr without timestamps (Loa's log has its own)."""
    return "\n".join([
        "# Loa's own MQTT broker. Written by Loa at every start: changes here are lost",
        "# (see loa/control/fleet/broker.py).",
        "per_listener_settings true",
        f"listener {port} {host}",
        "allow_anonymous false",
        f"password_file {folder / 'passwd'}",
        f"acl_file {folder / 'acl'}",
        "# the client id is the username: one session per endpoint, the older one dropped",
        "use_username_as_clientid true",
        "persistence false",
        "set_tcp_nodelay true",
        f"max_queued_messages {MAX_QUEUED}",
        f"user {user}",
        "log_dest stderr",
        *(f"log_type {t}" for t in ("error", "warning", "notice", "information")),
        "log_timestamp false",
        "",
    ])


def broker_files(host: str, port: int, folder: Path, user: str, topics: Topics,
                 users: dict[str, str]) -> BrokerFiles:
    """The three files for the users given (name → ``$7$`` hash: the endpoints, the server
    and the probe)."""
    return BrokerFiles(mosquitto_conf(host, port, folder, user), mosquitto_passwd_lines(users),
                       mosquitto_acl(topics.root, SERVER_USER))


def connect_packet(client_id: str, username: str, password: str, keepalive_s: int = 10) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session, username and password, and no will."""
    def s(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    body = (s(b"MQTT") + bytes([4, 0xC2]) + keepalive_s.to_bytes(2, "big")
            + s(client_id.encode()) + s(username.encode()) + s(password.encode()))
    n, length = len(body), bytearray()
    while True:  # the remaining length, 7 bits a byte
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([0x10]) + bytes(length) + body


_ROUTINE = re.compile(r"(New connection from |New client connected from |Client \S+ "
                      r"(disconnected\.$|closed its connection)|Opening ipv[46] listen socket|"
                      r"Config loaded from |Reloading config)")
_NOTICE = re.compile(r"(mosquitto version \S+ (starting|running|terminating)|Client \S+ has "
                     r"exceeded timeout|Warning: Mosquitto should not be run as root)")


def log_level(line: str) -> int:
    """The level a Mosquitto log line is logged at here: DEBUG for the routine (every
    connection and disconnection, Loa's own probe logins), INFO for start, stop and a client
    timed out, WARNING for the rest (a session taken over, a refused login, a malformed
    packet, any error)."""
    if PROBE_USER in line or _ROUTINE.match(line):
        return logging.DEBUG
    if _NOTICE.match(line):
        return logging.INFO
    return logging.WARNING


class MosquittoBroker:
    """Loa's own broker: Mosquitto on ``host:port`` (0: a free port, chosen at the first
    start), its files in ``folder``, credentials from ``registry`` (followed as they change),
    topics under ``topics``; restarts are counted in ``counters``. ``executable`` overrides
    where ``mosquitto`` is looked for (``PATH``, then /usr/sbin). ``start`` raises
    BrokerError; nothing else raises."""

    def __init__(self, host: str, port: int, folder: Path, topics: Topics,
                 registry: EndpointRegistry, counters: Counters, *,
                 executable: str | None = None) -> None:
        self.host = host
        self.port = port
        self.folder = folder
        self.topics = topics
        self.registry = registry
        self.counters = counters
        self.executable = executable
        self.server_password = secrets.token_urlsafe(24)  # the server's own login, per start
        self.starts = 0  # Mosquitto processes started and found accepting logins
        self.restarts = 0
        self.last_exit: str | None = None  # why the last Mosquitto ended, if one did
        self._proc: Child | None = None
        self._argv: list[str] = []
        self._user = ""
        self._started_s = 0.0
        self._tail: deque[str] = deque(maxlen=12)  # its last lines, for error messages
        self._pump: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._applier: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one writer of the files and the process at a time
        self._running = asyncio.Event()  # it said "running"
        self._reloaded = asyncio.Event()  # it said "Reloading config."
        self._kick = asyncio.Event()  # credentials changed
        self._launched = asyncio.Event()  # a start succeeded
        self._wanted = 0  # credential changes seen
        self._applied = 0  # those Mosquitto is known to have
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._window_s = 0.0
        self._lines = 0
        self._suppressed = 0
        self._stopping = False
        registry.on_credentials.append(self._changed)
        registry.on_removed.append(self._changed)

    @property
    def url(self) -> str:
        """``mqtt://host:port``, for the server's own client and the devices."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Mosquitto's process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    # lifecycle

    async def start(self) -> None:
        """Start Mosquitto and return once it accepts Loa's own login. BrokerError if it is
        not installed, the port is taken, or it exits or does not answer within ``START_S``."""
        exe, setpriv, self._user = await asyncio.to_thread(_find, self.executable)
        if exe is None:
            raise BrokerError(errno.ENOENT, "Loa's own MQTT broker is Mosquitto, and it is "
                                            f"not installed: {INSTALL_HINT}")
        self._argv = [*([setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []), exe]
        if self.port == 0:
            self.port = _free_port(self.host)
        else:
            _check_free(self.host, self.port)
        self.counters.inc("mqtt_broker_restarts", 0)  # exported from the start
        try:
            await self._launch()
        except BaseException:
            await self._end_process()
            raise
        log.info("MQTT broker: mosquitto (pid %s) on %s:%d", self.pid, self.host, self.port)
        self._supervisor = asyncio.create_task(self._supervise(), name="mqtt-broker")
        self._applier = asyncio.create_task(self._apply_changes(), name="mqtt-broker-logins")

    async def stop(self) -> None:
        """Stop supervising, then Mosquitto: SIGTERM, SIGKILL after ``STOP_S``. Waiters of
        ``synced`` get False. Never raises."""
        self._stopping = True
        await _cancel(self._supervisor)
        await _cancel(self._applier)
        await self._end_process()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_result(False)
        self._waiters.clear()

    async def synced(self, timeout_s: float = SYNC_S) -> bool:
        """Wait until Mosquitto has every credential change the registry made before this
        call (a new password works, a removed endpoint is out). False if it has not within
        ``timeout_s`` (it is down or restarting: it gets them when it is back); never
        raises."""
        want = self._wanted
        if self._applied >= want:
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        entry = (want, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(fut)
        except TimeoutError:
            log.warning("MQTT broker: credential changes not applied after %g s", timeout_s)
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def until_started(self, starts: int, timeout_s: float = 2 * START_S) -> None:
        """Wait until Mosquitto has been started ``starts`` times in all (the first start
        counts) and accepts logins; TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self.starts < starts:
                self._launched.clear()
                await self._launched.wait()

    # the process

    async def _launch(self) -> None:
        """Write the files, spawn Mosquitto and wait until it accepts the probe's login."""
        async with self._lock:
            target = self._wanted
            users, probe_password = self._users()
            conf = await asyncio.to_thread(self._write_all, users)
            self._running.clear()
            self._tail.clear()
            # started beside the loop: forking and waiting for the exec held the loop
            # 60-100 ms on a busy machine (a restart happens while the audio plays)
            proc = await spawn([*self._argv, "-c", str(conf)], stderr_pipe=True,
                               start_new_session=True)
            self._proc = proc
            self._started_s = time.monotonic()
            self._pump = asyncio.create_task(self._read_log(proc), name="mqtt-broker-log")
            await self._until_accepted(proc, self._running, probe_password, START_S)
            self._mark_applied(target)
            self.starts += 1
            self._launched.set()

    async def _end_process(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await self._poke()  # it acts on the signal at its loop's next turn
            try:
                async with asyncio.timeout(STOP_S):
                    await proc.wait()
            except TimeoutError:
                log.warning("MQTT broker: mosquitto did not stop within %g s: killed", STOP_S)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._pump is not None:  # its stderr ends with it
            await asyncio.wait({self._pump}, timeout=STOP_S)
            await _cancel(self._pump)

    async def _supervise(self) -> None:
        """Start Mosquitto again whenever it ends, with a back-off."""
        failures = 0
        while True:
            proc = self._proc
            assert proc is not None
            code = await proc.wait()
            if self._stopping:
                return
            if self._pump is not None:  # the last lines it wrote, logged
                await asyncio.wait({self._pump}, timeout=STOP_S)
            if time.monotonic() - self._started_s > STABLE_S:
                failures = 0
            self.restarts += 1
            self.counters.inc("mqtt_broker_restarts")
            self.last_exit = _exit_text(code)
            while True:
                delay_s = RESTART_S[min(failures, len(RESTART_S) - 1)]
                failures += 1
                log.error("MQTT broker: mosquitto (pid %d) %s; starting it again in %g s "
                          "(restart %d)", proc.pid, self.last_exit, delay_s, self.restarts)
                await asyncio.sleep(delay_s)
                try:
                    await self._launch()
                    log.info("MQTT broker: mosquitto running again (pid %s)", self.pid)
                    break
                except OSError as exc:  # BrokerError, or it could not be spawned at all
                    self.last_exit = str(exc)
                    await self._end_process()
                    proc = self._proc or proc

    async def _until_accepted(self, proc: Child, said: asyncio.Event,
                              password: str, deadline_s: float) -> None:
        """Wait until Mosquitto says it is running (or reloading), then until it accepts the
        probe's login with ``password``; BrokerError if it exits or does not in time."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        exited = asyncio.ensure_future(proc.wait())
        told = asyncio.ensure_future(said.wait())
        try:
            await asyncio.wait({exited, told}, timeout=deadline_s,
                               return_when=asyncio.FIRST_COMPLETED)
            told.cancel()
            delay_s = 0.01
            while not exited.done():
                # Mosquitto reloads within the loop turn that logs it, and started once it
                # says it runs: the first try normally passes; the rest are a safety net
                if await self._probe(password) == 0:
                    return
                if loop.time() + delay_s > end:
                    raise BrokerError(errno.ETIMEDOUT, "mosquitto did not accept Loa's login "
                                      f"within {deadline_s:g} s (Loa needs Mosquitto 2.0 or "
                                      f"later); its log ends: {self._last_words()}")
                await asyncio.wait({exited}, timeout=delay_s)  # a short pause, or its end
                delay_s = min(2 * delay_s, 0.2)
            if self._pump is not None:
                await asyncio.wait({self._pump}, timeout=1.0)  # its last words, read
            raise BrokerError(errno.EIO, f"mosquitto {_exit_text(proc.returncode)}; its log "
                                         f"ends: {self._last_words()}")
        finally:
            told.cancel()
            exited.cancel()

    async def _poke(self) -> None:
        """Connect and close at once: Mosquitto reloads at the end of its loop's turn, and a
        quiet broker otherwise takes the turn only when its 100 ms poll times out."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2.0):
                _, writer = await asyncio.open_connection(self._loopback, self.port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @property
    def _loopback(self) -> str:
        """Where Loa itself reaches the listener (a wildcard address is not one to dial)."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    async def _probe(self, password: str) -> int:
        """One login as the probe user: the CONNACK's return code (0: accepted), or -1 when
        the connection failed or closed without one."""
        try:
            async with asyncio.timeout(2.0):
                reader, writer = await asyncio.open_connection(self._loopback, self.port)
        except (OSError, TimeoutError):
            return -1
        try:
            writer.write(connect_packet(PROBE_USER, PROBE_USER, password))
            async with asyncio.timeout(2.0):
                head = await reader.readexactly(4)
            if head[0] != 0x20:
                return -1
            if head[3] == 0:
                writer.write(b"\xe0\x00")  # DISCONNECT: a goodbye, not a lost client
            return head[3]
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            return -1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # credentials

    def _changed(self, endpoint_ids: tuple[str, ...]) -> None:
        """Endpoints got new credentials (added, a password rotated): the password file is
        written anew, once for the lot."""
        self._wanted += 1
        self._kick.set()

    def _users(self) -> tuple[dict[str, str], str]:
        """A snapshot of the logins (name → ``$7$`` hash; the probe's from a new password, also
        returned), taken on the loop."""
        users = {e.id: e.secret_hash for e in self.registry.endpoints.values()
                 if e.secret_hash and e.id != SERVER_USER}
        probe_password = secrets.token_urlsafe(16)
        users[SERVER_USER] = self.server_password  # hashed with the probe's, beside the loop
        users[PROBE_USER] = probe_password
        return users, probe_password

    def _mark_applied(self, target: int) -> None:
        self._applied = max(self._applied, target)
        for want, fut in self._waiters:
            if want <= self._applied and not fut.done():
                fut.set_result(True)

    async def _apply_changes(self) -> None:
        """Rewrite the password file and reload Mosquitto after credential changes; changes
        that arrive meanwhile go together in the next reload."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            if self._applied >= self._wanted:
                continue
            try:
                await self._reload()
            except BrokerError as exc:
                log.error("MQTT broker: new logins not applied (%s); trying again in %g s",
                          exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
                self._kick.set()

    async def _reload(self) -> None:
        async with self._lock:
            proc = self._proc
            if proc is None or proc.returncode is not None:
                return  # down: its restart writes every file afresh
            target = self._wanted
            users, probe_password = self._users()
            await asyncio.to_thread(self._write_passwd, users)
            self._reloaded.clear()
            proc.send_signal(signal.SIGHUP)
            await self._poke()
            await self._until_accepted(proc, self._reloaded, probe_password, RELOAD_S)
            self._mark_applied(target)

    # files (blocking: run beside the loop)

    def _write_all(self, users: dict[str, str]) -> Path:
        folder = self.folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        hashed = _hashed(users)
        files = broker_files(self.host, self.port, folder, self._user, self.topics, hashed)
        _write(folder / "acl", files.acl)
        _write(folder / "passwd", files.passwd)
        _write(folder / "mosquitto.conf", files.conf)
        return folder / "mosquitto.conf"

    def _write_passwd(self, users: dict[str, str]) -> None:
        _write(self.folder.resolve() / "passwd", mosquitto_passwd_lines(_hashed(users)))

    # its log

    async def _read_log(self, proc: Child) -> None:
        """Mosquitto's stderr, line by line, into this module's logger until it ends."""
        stream = proc.stderr
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the stream's limit: not one of Mosquitto's
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            self._tail.append(line)
            if line.startswith("mosquitto version") and line.endswith(" running"):
                self._running.set()
            elif line == "Reloading config.":
                self._reloaded.set()
            self._log(log_level(line), line)

    def _log(self, level: int, line: str) -> None:
        if level < logging.INFO:
            log.debug("mosquitto: %s", line)
            return
        now = time.monotonic()
        if now - self._window_s >= 1.0:
            if self._suppressed:
                log.warning("mosquitto: %d more line(s) not shown", self._suppressed)
            self._window_s, self._lines, self._suppressed = now, 0, 0
        self._lines += 1
        if self._lines > LOG_LINES_PER_S:
            self._suppressed += 1
            return
        log.log(level, "mosquitto: %s", line)

    def _last_words(self) -> str:
        return " | ".join(self._tail) or "(nothing)"


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a task of ours and wait for it, at most ``STOP_S``: shutdown goes on whatever
    it does. (No ``asyncio.wait_for`` in here or in what it cancels: in Python 3.11 it can
    swallow a cancellation that arrives as the awaited thing completes.)"""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait({task}, timeout=STOP_S)
    if not task.done():
        log.warning("MQTT broker: task %s did not end within %g s", task.get_name(), STOP_S)


def _find(executable: str | None) -> tuple[str | None, str | None, str]:
    """(mosquitto, setpriv if there, the user we run as); blocking: file and user lookups."""
    if executable is not None:
        exe = executable if os.access(executable, os.X_OK) else None
    else:  # Debian puts it in /usr/sbin, which a user's PATH often lacks
        exe = shutil.which("mosquitto") or shutil.which(
            "mosquitto", path="/usr/local/sbin:/usr/sbin:/sbin")
    setpriv = shutil.which("setpriv") if os.uname().sysname == "Linux" else None
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a name (a container): Mosquitto then stays as it is
        user = str(os.geteuid())
    return exe, setpriv, user


def _hashed(users: dict[str, str]) -> dict[str, str]:
    """The endpoints' hashes as they are; the server's and the probe's passwords hashed."""
    return {u: hash_password(p) if u in (SERVER_USER, PROBE_USER) else p
            for u, p in users.items()}


def _write(path: Path, text: str) -> None:
    """Replace ``path`` at once (a reload never reads half a file), readable by us only."""
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "is running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerPortTaken(host, port) from None
            raise
