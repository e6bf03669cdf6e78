"""Wiring: one `LoaServer` owns the clock, engine, inputs, outputs and API, and shuts them
down in phases (stop accepting, stop the clock, end sources and listeners, close)."""

from __future__ import annotations

import asyncio
import gc
import html
import json
import logging
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import loa.codecs.mp3  # noqa: F401  # codec and output families registered at import, so no
import loa.codecs.opus  # noqa: F401  # first listener imports them on the loop (or the tick)
import loa.playout.outputs.mp3_http  # noqa: F401
import loa.playout.outputs.ogg_http  # noqa: F401
import loa.playout.outputs.websocket  # noqa: F401
from loa import __version__
from loa.api.console import ConsoleFiles
from loa.api.errors import error_middleware
from loa.api.events import EventHub
from loa.api.middleware import auth_middleware, close_after_response, throttle_middleware
from loa.api.resource import SERVER_KEY
from loa.api.routes import Api
from loa.api.whip import routes as webrtc_routes
from loa.codecs.loudness import Leveller
from loa.codecs.tts import Tts
from loa.config import Config
from loa.control.accounts import Accounts
from loa.control.alerts.cap import CapAlerts
from loa.control.alerts.manager import AlertManager
from loa.control.alerts.model import AlertStatus
from loa.control.audit import AUDIT_SOURCE
from loa.control.auth import (
    SOURCE_PASSWORD_FILE,
    TOKEN_FILE,
    Principal,
    Right,
    keep_admin_token,
    keep_source_password,
    load_source_password,
    load_tokens,
)
from loa.control.datalock import DataLock
from loa.control.endpoints import EndpointRegistry
from loa.control.fleet.broker import SERVER_USER, MosquittoBroker
from loa.control.fleet.control import FleetControl
from loa.control.media import MediaItem, MediaLibrary
from loa.control.programmes import ProgrammeFactory
from loa.control.schedule.engine import Running, ScheduleEngine
from loa.control.schedule.recurrence import (
    STATION_TZ,
    MissedPolicy,
    ScheduleError,
    ScheduleItem,
    item_from_json,
)
from loa.control.store import Store
from loa.control.streams import Streams
from loa.core.clock import NS_PER_S, Clock, MonotonicClock, WallClock
from loa.core.content import (
    ContentError,
    ContentSpec,
    FileContent,
    LiveContent,
    MediaContent,
    PlaylistContent,
)
from loa.core.counters import Counters
from loa.core.disk import sweep_partials
from loa.core.fetch_policy import refusal_in
from loa.core.i18n import load_catalogues
from loa.core.lifecycle import cancel_and_wait
from loa.core.pcm import FRAME_MS
from loa.core.priority import Priority
from loa.core.throttle import FailureThrottle
from loa.core.zones import ZoneTree, home_zone_id, is_alert_group
from loa.monitoring.alarms import AlarmBoard
from loa.monitoring.alarms import check as check_alarm_rules
from loa.monitoring.broadcast_log import BroadcastLog
from loa.monitoring.loop_lag import LoopLag
from loa.playout.admission import Admission
from loa.playout.engine import Engine
from loa.playout.front_door import FrontProtocol, Routed, TlsSettings, server_tls_context
from loa.playout.inputs.file import READERS
from loa.playout.inputs.generator import chime_source
from loa.playout.inputs.live import LiveSettings
from loa.playout.inputs.push import Mounts
from loa.playout.inputs.relay import Relay
from loa.playout.listener import PublicListener
from loa.playout.outbound import outbound_session
from loa.playout.programme import EndReason, Programme, ProgrammeKind
from loa.playout.webrtc import WebRtc
from loa.playout.zone_channel import FanoutSettings, Request
from loa.protocol.http import RequestHead, query_bytes

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 2.0
START_DEADLINE_S = 30.0  # each phase of start-up
GIL_SWITCH_S = 0.001  # sys.setswitchinterval for the loop's sake (see _start)
STOP_DEADLINE_S = 15.0  # each phase of shutdown
SWITCH_INTERVAL_S = 0.001
LOG_FLUSH_NS = NS_PER_S


class LoaServer:
    """The composition root: builds, from one Config, the clock (injected or monotonic),
    zone tree, engine, store, endpoint registry, mounts, streams, alerts, media library,
    broadcast log, fleet control (MQTT, on a Mosquitto of its own by default), alarms and
    schedule, and serves them on one port. The operations the API calls live here."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or MonotonicClock()
        self.counters = Counters()
        # the one wall clock: on the pipeline's clock, kept on the system's (not under test)
        self.wall = WallClock(self.clock, STATION_TZ, system=time.time
                              if isinstance(self.clock, MonotonicClock) else None)
        self.counters.inc("read_ahead_underruns", 0)  # exported from the start, not the first
        self.zones = ZoneTree(config.zones)
        self.engine = Engine(
            self.zones, self.clock, self.counters,
            FanoutSettings(config.bitrates_bps, config.burst_ms, config.backlog_ms,
                           config.http_batch_ms, config.http_batch_above,
                           config.http_batch_large_ms, config.http_batch_large_above),
        )
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_lock = DataLock(data_dir)
        self.data_lock.acquire()  # DataDirBusy: another server runs on this folder
        self.store = Store(data_dir / "loa.sqlite3")
        self._load_zone_settings()
        self.endpoints = EndpointRegistry(self.zones, self.engine.channels, self.store)
        self._load_endpoints()
        self.media_dir = data_dir / "media"
        self.media_dir.mkdir(exist_ok=True)
        extra = {t.sha256: Principal(t.name, frozenset(Right(r) for r in t.rights))
                 for t in config.tokens}
        # The first start's secrets (a new admin token, source password and admin account)
        # are kept only once the server has started (``_keep_first_secrets``): a start that
        # fails (a port taken) leaves none behind, and the next start makes and shows them.
        self.tokens, self.new_admin_token = load_tokens(data_dir, config.admin_token, extra)
        # people's accounts; the first start makes "admin" (its password hashed: ~0.1 s), with
        # LOA_ADMIN_PASSWORD's password or a random one (shown once)
        self.accounts = Accounts(self.store, self.zones, self.clock, self.wall.timestamp,
                                 config.sessions)
        # made now (hashing blocks ~0.1 s: here, beside an idle loop), kept once started
        self._first_admin = self.accounts.first_admin(config.admin_password)
        self.new_admin_password: str | None = None
        password, self.source_password_generated = load_source_password(
            data_dir, config.source_password
        )
        self.live_settings = LiveSettings(
            target_frames=max(1, config.jitter_target_ms // FRAME_MS),
            max_target_frames=max(1, config.jitter_max_ms // FRAME_MS),
            capacity_frames=max(2, 2 * config.jitter_max_ms // FRAME_MS),
            stall_ms=config.source_stall_ms,
            agc_target_lufs=config.loudness_target_lufs if config.live_agc else None,
        )
        limits = config.limits
        # wrong source passwords and API tokens, one account per client address
        self.throttle = FailureThrottle(
            self.clock.now_ns, free_failures=limits.failures_free,
            max_delay_s=limits.failure_delay_max_s, trusted_proxies=limits.trusted_proxies)
        # connections per client address, and descriptors kept for the API and sources
        self.admission = Admission(self.counters, per_address=limits.connections_per_address,
                                   exempt=limits.exempt, reserve=limits.fd_reserve)
        self.mounts = Mounts(
            lambda p: self.engine.add_programme(p, persistent=True),
            self.clock, self.counters, self.live_settings, password, dict(config.mount_passwords),
            source_timeout_s=config.source_timeout_s, throttle=self.throttle,
        )
        self.tts = Tts(data_dir / "tts")
        self.media = MediaLibrary(self.store, self.media_dir / "library",
                                  config.loudness_target_lufs)
        self.leveller = Leveller(config.loudness_target_lufs)
        self._http: aiohttp.ClientSession | None = None
        self.programmes = ProgrammeFactory(
            media=self.media, media_dir=self.media_dir, tts=self.tts, leveller=self.leveller,
            mounts=self.mounts, clock=self.clock, counters=self.counters,
            live_settings=self.live_settings, http=lambda: self._http,
            fetch=self.fetch_resource,
            known_mounts=set(json.loads(self.store.get_value("mounts_known") or "[]")))
        # The fleet asks whether an alert plays in a zone (a returning endpoint's volume);
        # alerts command the fleet's volumes: the fleet is made first and asks through here.
        self.fleet = FleetControl(config.mqtt, self.endpoints, self.zones, self.clock,
                                  self.counters, self.wall.timestamp,
                                  self.store.log_presence,
                                  on_zone_settings=self.save_zone_settings,
                                  alerting=lambda zone_id: self.alerts.zone_alerting(zone_id))
        self.alerts = AlertManager(self.engine, self.zones, self.endpoints, self.mounts,
                                   self.store, self.programmes, self.clock, self.counters,
                                   tone_s=config.alert_tone_s, gap_s=config.alert_gap_s,
                                   wall=self.wall.timestamp, fleet=self.fleet)
        self.cap = CapAlerts(self.alerts)
        self.streams = Streams(self.engine, self.endpoints, self.clock, config.sndbuf_bytes,
                               on_played=self.alerts.on_played)
        self.broadcast_log = BroadcastLog(self.store, self.clock)
        self._recover_log()
        self._log_task: asyncio.Task[None] | None = None
        self.started_ns = self.clock.now_ns()
        self.broker: MosquittoBroker | None = None  # Loa's own ([mqtt] url = "embedded")
        self.alarms = AlarmBoard(self._audit_alarm, self._alarm_zone)
        self._alarm_task: asyncio.Task[None] | None = None
        self._alarm_check = asyncio.Lock()  # one check at a time (the watcher's, GET alarms')
        self.loop_lag = LoopLag()
        self.engine.on_lateness = self.loop_lag.observe_ns  # a sample a tick
        self._readers_started = False
        self.schedule = ScheduleEngine(self.wall, self._start_slot, self._close_slot)
        self._schedule_task: asyncio.Task[None] | None = None
        self.relays: dict[int, Relay] = {}
        self._stopping: set[asyncio.Task[None]] = set()  # relay shutdowns we started
        self._slot_relays: list[Relay] = []
        self._runner: web.AppRunner | None = None
        self._server: PublicListener | None = None
        self.events = EventHub(self)  # the console's live streams (/api/v1/events)
        # WHIP sources and WHEP viewers; aiortc is imported by the first one (or at start-up
        # with [webrtc] preload), beside the loop: idle stations never load it
        self.webrtc = WebRtc(config.webrtc.with_listen_host(config.listen_host))
        self.port = 0
        self.host = config.listen_host
        self._stopped = False

    @property
    def url(self) -> str:
        """Where the server answers, once listening (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.config.tls.enabled else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def source_password(self) -> str:
        return self.mounts.global_password

    # lifecycle

    async def start(self, *, run_clock: bool = True) -> None:
        """Start everything; a part that cannot start (a taken port) stops the rest again
        and its error is raised."""
        try:
            await self._start(run_clock)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, run_clock: bool) -> None:
        # The event loop's thread waits for the GIL whenever a worker thread runs Python (a
        # schedule's slots searched, a list built beside the loop): each wait is one switch
        # interval at least, and several busy threads can win it in turn (seen: the master
        # clock held 41 ms behind two such threads at CPython's default 5 ms). At 1 ms the
        # loop gets it back five times sooner; the cost is more switches in busy workers.
        sys.setswitchinterval(GIL_SWITCH_S)
        for name, deadline_s, phase in (
            ("worker threads and processes", START_DEADLINE_S, self._start_workers),
            # the broker first: a taken MQTT port fails before anything listens
            ("the fleet", START_DEADLINE_S, lambda: self._start_fleet(run_clock)),
            ("the web front", START_DEADLINE_S, self._start_web),
            ("programmes", START_DEADLINE_S, lambda: self._start_programmes(run_clock)),
        ):
            try:
                async with asyncio.timeout(deadline_s):
                    await phase()
            except TimeoutError:
                raise TimeoutError(f"starting {name} took over {deadline_s:g} s") from None
        # started: now the first start's secrets are kept (and shown by the caller)
        await asyncio.to_thread(self._keep_first_secrets)
        if self._first_admin is not None:  # on the loop, which reads the accounts
            user, self.new_admin_password = self._first_admin
            self.accounts.keep_first_admin(user)
            self._first_admin = None
        said = self.config.redacted()  # never a secret
        own = (f", mounts with a password of their own: {', '.join(said['mounts'])}"
               if said["mounts"] else "")
        log.info("Loa %s listening on %s:%d: data %s, %d zones, %d endpoints registered (%d "
                 "in the configuration), MQTT %s%s", __version__, self.host, self.port,
                 said["data_dir"], said["zones"], len(self.endpoints.endpoints),
                 said["endpoints"], said["mqtt"], own)
        # What start-up built lives as long as the server: out of the garbage collector's
        # full passes, which would otherwise stop the loop for ~100 ms on a large heap.
        gc.freeze()

    def _keep_first_secrets(self) -> None:
        """Blocking (files): once every part has started, keep what a first start made: the
        new admin token's hash and the generated source password (files of the data folder).
        ``_start`` then keeps the first admin account, made (hashed) at construction
        (``new_admin_password``: the random password to show once, None when
        LOA_ADMIN_PASSWORD gave it or an account exists). Until then the token and source
        password work from memory only, and no account exists: a start that fails before this
        point keeps no secret that it could not show. A file that cannot be written is
        removed again with the others (OSError)."""
        data_dir = Path(self.config.data_dir)
        written: list[Path] = []  # what to remove again if one write fails (half written too)
        try:
            if self.new_admin_token:
                written.append(data_dir / TOKEN_FILE)
                keep_admin_token(data_dir, self.new_admin_token)
            if self.source_password_generated:
                written.append(data_dir / SOURCE_PASSWORD_FILE)
                keep_source_password(data_dir, self.mounts.global_password)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    async def _start_workers(self) -> None:
        await asyncio.to_thread(self._sweep_debris)  # before anything writes
        await asyncio.to_thread(READERS.start)  # file readers: never started on a tick
        self._readers_started = True
        # the loudness process is not started here: it starts on the first measurement
        # (scipy and ~120 MB an idle server does not need) and ends when idle
        await asyncio.to_thread(load_catalogues)  # the messages' languages, read once
        if self.config.webrtc.preload:
            await self.webrtc.ready()  # aiortc imported and warmed up on a worker thread
        # The loop's thread gets the GIL back from worker threads within 1 ms, not 5 ms.
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    async def _start_web(self) -> None:
        app = web.Application(middlewares=[throttle_middleware, auth_middleware,
                                           error_middleware],
                              client_max_size=(self.config.max_upload_mb << 20) + (1 << 20))
        app.on_response_prepare.append(close_after_response)  # every request via the front door
        app[SERVER_KEY] = self
        app.add_routes(Api(self).routes())
        console = await asyncio.to_thread(ConsoleFiles.load)  # file I/O, beside the loop
        app.add_routes(console.routes())
        app.add_routes([
            web.get("/zones/{zone}/ws", self.streams.websocket),
            web.get("/endpoints/{endpoint}/ws", self.streams.websocket),
            web.get("/admin/metadata", self.icecast_metadata),
        ])
        app.add_routes(webrtc_routes())  # WHIP (/whip/<mount>) and WHEP (/whep/zones/<zone>)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        aiohttp_server = self._runner.server
        assert aiohttp_server is not None
        tls: TlsSettings | None = None
        if self.config.tls.cert_file is not None:  # the certificate is read beside the loop
            context = await asyncio.to_thread(server_tls_context, self.config.tls.cert_file,
                                              self.config.tls.key_file)
            tls = TlsSettings(context, self.config.tls.allow_plain)
        # accepted by Loa itself, a batch at a time, so admission keeps descriptors in reserve
        self._server = await PublicListener.open(
            self.config.listen_host, self.config.listen_port,
            lambda: FrontProtocol(self._raw_route, aiohttp_server, admission=self.admission,
                                  tls=tls),
            self.admission)
        sock: socket.socket = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        await asyncio.to_thread(self.data_lock.note, self.url)
        # every outgoing fetch, its redirects and playlist entries, checked against
        # [network] fetch_allow / fetch_deny on each address connected to
        self._http = outbound_session(self.config.fetch_policy)

    async def _start_programmes(self, run_clock: bool) -> None:
        if self.config.demo:
            for root in self.zones.roots():
                demo = Programme("Nhạc chờ (demo)", ProgrammeKind.GENERATOR, chime_source())
                self.engine.request(root.id, demo, int(Priority.FILL), label="demo")
        resumed = await self.alerts.resume()
        if resumed:
            log.warning("resumed %d alert(s) that were active at the last stop", len(resumed))
        self.alerts.start()
        self.cap.start()
        self._log_task = asyncio.create_task(self._write_log(), name="broadcast-log")
        await self._load_schedules()
        if run_clock:
            self._schedule_task = asyncio.create_task(self.schedule.run(), name="schedule")
            self.engine.start()
            self._alarm_task = asyncio.create_task(self._watch_alarms(), name="alarms")

    async def stop(self) -> None:
        """Shut down in phases, once, each within its deadline (one that overruns or fails is
        logged, and the next goes on): accept nobody new; stop alerts, the clock and the
        background tasks (fleet, broker, log, schedule); close the broadcast log (server
        stopped); end sources (decoder threads joined), relays and listeners; close the web
        app, the client session and the store (drained)."""
        if self._stopped:
            return
        self._stopped = True
        for name, deadline_s, phase in (
            ("accepting", 1.0, self._stop_accepting),
            ("the clock and background tasks", STOP_DEADLINE_S, self._stop_clock),
            ("the broadcast log", STOP_DEADLINE_S, self._close_log),
            ("sources and listeners", STOP_DEADLINE_S, self._stop_sources),
            ("the web app and the store", STOP_DEADLINE_S, self._close),
        ):
            try:
                async with asyncio.timeout(deadline_s):
                    await phase()
            except TimeoutError:
                log.error("stopping %s took over %g s: going on without it", name, deadline_s)
            except Exception:  # one part failing must not leave the others running
                log.exception("stopping %s failed: going on", name)

    def _recover_log(self) -> None:
        """What the last run left on air in the broadcast log (it did not stop cleanly) is
        closed, at the last second it was seen on air (blocking: at construction)."""
        left = self.broadcast_log.recover(EndReason.UNCLEAN_STOP)
        if left:
            log.warning("the last run stopped uncleanly while %d segment(s) were on air (%s): "
                        "closed in the broadcast log as %r", len(left),
                        ", ".join(f"{e['zone']}: {e['programme']!r}" for e in left[:5]),
                        EndReason.UNCLEAN_STOP.value)

    def debris_folders(self) -> list[Path]:
        """Where Loa writes files aside (``*.part``) before moving them into place: media and
        alert uploads, CAP resources, text read aloud."""
        return [self.media.incoming, self.media_dir / "alerts", self.media_dir / "cap",
                self.tts.cache_dir]

    def _sweep_debris(self) -> None:
        """Remove the partial files a killed run left behind (blocking: beside the loop, at
        start, before anything writes)."""
        removed = sweep_partials(self.debris_folders())
        if removed:
            log.warning("removed %d partial file(s) (%.1f MB) left by an earlier run: %s",
                        len(removed), sum(size for _, size in removed) / 1e6,
                        ", ".join(path.name for path, _ in removed[:5]))

    async def _stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.events.close()  # the live streams end now, not when the web app closes

    async def _stop_clock(self) -> None:
        await self.alerts.stop()
        await self.engine.stop()  # no more ticks
        await cancel_and_wait(self._alarm_task)
        await self.fleet.stop()
        if self.broker is not None:
            await self.broker.stop()
        await cancel_and_wait(self._log_task)
        await cancel_and_wait(self._schedule_task)

    async def _close_log(self) -> None:
        self.store.set_value("schedule_done_until", self.wall.now().isoformat())
        self._remember_mounts()
        self.broadcast_log.consume(self.engine.drain_switch_events())
        self.broadcast_log.close_all(EndReason.SERVER_STOPPED)

    async def _stop_sources(self) -> None:
        await self.webrtc.stop()  # WHIP sources and WHEP viewers, peer connections closed
        await self.mounts.stop()  # decoder threads joined
        for relay in [*self.relays.values(), *self._slot_relays]:
            await relay.stop()
        if self._stopping:
            await asyncio.gather(*self._stopping)
        for ch in self.engine.channels.values():
            for feed in ch.feeds.values():
                feed.close_all()
        for prog in list(self.engine.programmes.values()):
            prog.close()
        if self._readers_started:
            await asyncio.to_thread(READERS.stop, SHUTDOWN_GRACE_S)

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), SHUTDOWN_GRACE_S)
            except TimeoutError:
                pass
        if self._http is not None:
            await self._http.close()
        await asyncio.to_thread(self.store.close)  # drains what is queued, with a deadline
        self.data_lock.release()

    # the fleet

    def _load_zone_settings(self) -> None:
        saved = json.loads(self.store.get_value("zone_settings") or "{}")
        for zone in self.zones:
            z = saved.get(zone.id, {})
            zone.volume_pct = int(z.get("volume_pct", zone.volume_pct))
            zone.alert_volume_pct = int(z.get("alert_volume_pct", zone.alert_volume_pct))

    def save_zone_settings(self) -> None:
        """Persist each zone's volume and alert volume (%) (alert groups are not saved)."""
        self.store.set_value("zone_settings", json.dumps(
            {z.id: {"volume_pct": z.volume_pct, "alert_volume_pct": z.alert_volume_pct}
             for z in self.zones if not is_alert_group(z.id)}))

    def _load_endpoints(self) -> None:
        """The saved registry, plus the configured endpoints never seen before (so one the
        operators deleted does not come back on the next start)."""
        self.endpoints.load()
        seeded = set(json.loads(self.store.get_value("endpoints_seeded") or "[]"))
        for e in self.config.endpoints:
            if e.id in seeded or e.id in self.endpoints.endpoints:
                continue
            self.endpoints.add(e.id, e.zone_id, e.name, e.lat, e.lon, e.address, e.admin_code)
            seeded.add(e.id)
        self.store.set_value("endpoints_seeded", json.dumps(sorted(seeded)))

    async def _start_fleet(self, run_clock: bool) -> None:
        mq = self.config.mqtt
        if mq.embedded:
            # Loa's own broker: a Mosquitto it starts and supervises, its files in the data
            # folder, the registry's credentials followed as they change
            self.broker = MosquittoBroker(mq.listen_host, mq.listen_port,
                                          Path(self.config.data_dir) / "mosquitto",
                                          self.fleet.topics, self.endpoints, self.counters)
            await self.broker.start()
            self.fleet.start(self.broker.url, SERVER_USER, self.broker.server_password,
                             run_clock=run_clock)
        else:
            self.fleet.start(mq.url, run_clock=run_clock)

    async def _watch_alarms(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.now_ns() + NS_PER_S)
            await self.check_alarms()
            self.correct_wall()

    def correct_wall(self) -> None:
        """Keep the wall clock on the system's (once a second); a step re-plans the
        schedule and is logged and audited."""
        step = self.wall.correct()
        if step:
            log.warning("wall clock stepped %+.3f s to the system clock", step)
            self.store.audit("loa", "clock.wall_step", "wall", {"step_s": round(step, 3)})
            self.schedule.replan()

    def _alarm_zone(self, subject: str) -> str | None:
        """The zone an alarm's subject lies in: an endpoint's (its home zone while an alert
        holds it), a zone itself; None for what is the whole station's (the broker, the
        disk, a source)."""
        ep = self.endpoints.endpoints.get(subject)
        if ep is not None:
            return home_zone_id(ep.zone_id)
        return subject if subject in self.zones else None

    def _audit_alarm(self, action: str, subject: str, detail: dict[str, Any],
                     zone: str | None) -> None:
        """An alarm's raise or clear in the audit log: the server's own entry, in the
        subject's zone and from no client, whichever request had the rules evaluated
        (``GET alarms`` does)."""
        source = AUDIT_SOURCE.set(None)
        try:
            self.store.audit("loa", action, subject, detail, zone=zone)
        finally:
            AUDIT_SOURCE.reset(source)

    async def check_alarms(self) -> None:
        """Evaluate the alarm rules now (clock ns, station wall time), the endpoints a slice a
        loop step (``loa.monitoring.alarms.check``), after any check under way; a failing
        check is logged, never raised."""
        async with self._alarm_check:
            try:
                now = self.clock.now_ns()
                await check_alarm_rules(self, self.config.alarms, self.alarms, now,
                                        self.wall.now().timestamp())
            except Exception:  # an alarm check must never take the server down
                log.exception("checking alarms failed")

    def _raw_route(self, transport: asyncio.Transport, head: RequestHead, rest: bytes
                   ) -> bool | Routed:
        return self.mounts.accept(transport, head, rest) or self.streams.accept(transport, head,
                                                                                 rest)

    # operations (the API and, later, the scheduler and alerts call these)

    def take_live(self, zone_id: str, mount_name: str, priority: int, by: str = ""
                  ) -> tuple[Request, bool]:
        """Take a zone (and its children) for a live mount, ``by`` whom (a user or token
        name). Idempotent per zone and mount."""
        self.zones.get(zone_id)
        mount = self.programmes.mount(mount_name)  # a known mount, or ContentError
        for req in self.engine.requests_on(zone_id):
            if req.programme is mount.programme and req.priority == priority:
                return req, False
        return self.engine.request(zone_id, mount.programme, priority,
                                   label=f"live/{mount_name}", by=by), True

    def release_live(self, zone_id: str, mount_name: str | None = None) -> list[int]:
        """Release the live requests made on the zone itself (those of ``mount_name`` only,
        if given). Returns the released request ids."""
        released = []
        for req in self.engine.requests_on(zone_id):
            if req.programme.kind is not ProgrammeKind.LIVE:
                continue
            if mount_name and req.label != f"live/{mount_name}":
                continue
            if self.engine.release(req.id) is not None:  # not ended meanwhile (a lull's ticks)
                released.append(req.id)
        return released

    async def add_request(self, zone_id: str, content: ContentSpec, priority: int,
                          by: str = "") -> Request:
        """Put content on a zone at ``priority`` (``REQUEST_KINDS``). A file is found, opened
        and its first second decoded, and text read aloud, beside the loop before the request
        is made. Raises ZoneError for an unknown zone, ContentError for content that cannot
        play."""
        self.zones.get(zone_id)
        if isinstance(content, LiveContent):
            req, _ = self.take_live(zone_id, content.mount, priority, by)
            return req
        built = await self.programmes.make(content)
        req = self.engine.request(zone_id, built.programme, priority, label=built.label, by=by)
        if built.relay is not None:
            self.relays[req.id] = built.relay
            req.on_end.append(self._relay_ended)
        return req

    async def fetch_resource(self, url: str, limit_bytes: int = 20 << 20) -> bytes:
        """A CAP resource by URL (http/https), size-limited. Raises ValueError (not http(s),
        a status other than 200, over ``limit_bytes``, a host the fetch policy refuses: the
        reason given), aiohttp.ClientError, TimeoutError."""
        if not url.startswith(("http://", "https://")) or self._http is None:
            raise ValueError(f"cannot fetch resource {url!r}")
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status != 200:
                    raise ValueError(f"resource {url}: HTTP {resp.status}")
                data = await resp.content.read(limit_bytes + 1)
        except aiohttp.ClientConnectorError as exc:
            refused = refusal_in(exc)
            if refused is None:
                raise
            raise ValueError(refused.explain(f"resource {url}: fetch from")) from None
        if len(data) > limit_bytes:
            raise ValueError(f"resource {url} is over {limit_bytes} bytes")
        return data

    async def _write_log(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.now_ns() + LOG_FLUSH_NS)
            try:
                self.broadcast_log.consume(self.engine.drain_switch_events())
                self.store.set_value("schedule_done_until", self.wall.now().isoformat())
                self._remember_mounts()
            except Exception:  # a full disk must not end the log task for good
                log.exception("writing the broadcast log failed")

    def _remember_mounts(self) -> None:
        """Mounts used this run stay known at the next start (``programmes.mount``)."""
        used = set(self.mounts.mounts) - self.programmes.known_mounts
        if used:
            self.programmes.known_mounts |= used
            self.store.set_value("mounts_known",
                                 json.dumps(sorted(self.programmes.known_mounts)))

    # the schedule

    async def _load_schedules(self) -> None:
        """Load the saved schedule; slots missed while the server was down follow each
        item's policy: skipped (and logged), or played late within its late_minutes. The
        items are read, made and their missed slots expanded beside the loop."""
        now = self.wall.now()
        items, missed = await asyncio.to_thread(_saved_schedule, self.store, now)
        for item in items:
            self.schedule.put(item, join=False)  # their missed slots: below, by policy
        for item, slot in missed:
            late_s = (now - slot).total_seconds()
            if item.missed is MissedPolicy.LATE and late_s <= item.late_minutes * 60:
                self.schedule.start_late(item, slot, now)
                note = f"played {late_s:.0f} s late after a restart"
            else:
                note = "missed while the server was down: skipped"
            self.store.audit("loa", "schedule.missed", item.id,
                             {"slot": slot.isoformat(), "note": note}, zones=item.zones)
            log.warning("schedule %s slot %s: %s", item.id, slot.isoformat(), note)

    def _start_slot(self, item: ScheduleItem, slot: datetime) -> list[Request]:
        prog = self._slot_programme(item)
        if prog is None:
            return []
        return [self.engine.request(z, prog, item.cls.priority, label=f"schedule/{item.id}")
                for z in item.zones if z in self.zones]

    def _slot_programme(self, item: ScheduleItem) -> Programme | None:
        """Built when the slot starts (checked and prepared when the item was saved); what
        cannot play is logged and audited, and the slot stays silent."""
        if item.content is None:  # a draft has no slots; this is only for the type checker
            return None
        try:
            built = self.programmes.build(item.content, item.title)
        except ContentError as exc:
            log.error("schedule %s cannot start: %s", item.id, exc)
            self.store.audit("loa", "schedule.failed", item.id, {"error": str(exc)},
                             zones=item.zones)
            return None
        if built.relay is not None:
            self._slot_relays.append(built.relay)
        return built.programme

    def _close_slot(self, run: Running) -> None:
        """The slot's window has closed: what still plays, or waits preempted, is cut short."""
        for req in run.handle if isinstance(run.handle, list) else []:
            if self.engine.release(req.id, reason=EndReason.CUT_SHORT) is not None:
                self.store.audit("loa", "schedule.cut_short", run.item.id,
                                 {"slot": run.slot.isoformat(), "zone": req.zone_id},
                                 zones=run.item.zones)
        for relay in [r for r in self._slot_relays if r.programme.finished]:
            self._slot_relays.remove(relay)
            self._stop_later(relay)

    def _stop_later(self, relay: Relay) -> None:
        """Stop a relay from synchronous code; the task is owned and awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(relay.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def media_in_use(self, item: MediaItem) -> bool:
        """Whether a media item is requested now, in a schedule item, or the message of a
        pending or active alert (it must not be deleted then)."""
        if any(r.label == f"media/{item.id}" for r in self.engine.requests.values()):
            return True
        if any(s.content is not None and _plays(s.content, item)
               for s in self.schedule.items.values()):
            return True
        return any(a.status in (AlertStatus.PENDING, AlertStatus.ACTIVE)
                   and _plays(a.spec.content, item) for a in self.alerts.alerts.values())

    def _relay_ended(self, req: Request, reason: EndReason) -> None:
        relay = self.relays.pop(req.id, None)
        if relay is not None:  # ended by the engine (not the API)
            self._stop_later(relay)

    async def release_request(self, request_id: int) -> Request | None:
        """Release a request (stopping its relay, if any); None if there is no such request."""
        relay = self.relays.pop(request_id, None)
        if relay is not None:
            await relay.stop()
        return self.engine.release(request_id)

    def status(self) -> dict[str, Any]:
        """The ``/api/v1/status`` snapshot: engine, zones, mounts, relays, listeners, counters,
        loop lag, live alerts, fleet, alarms, store queue and schedule lateness (ms)."""
        return {
            "version": __version__,
            "engine": self.engine.describe(),
            "zones": [ch.describe() for ch in self.engine.channels.values()],
            "mounts": [m.describe() for m in self.mounts.mounts.values()],
            "webrtc": self.webrtc.describe(),
            "relays": {rid: r.describe() for rid, r in self.relays.items()},
            "listeners": sum(sum(ch.listeners().values())
                             for ch in self.engine.channels.values()),
            "counters": self.counters.snapshot(),
            "loop_lag_ms": self.loop_lag.recent_ms(),
            "alerts": [a.describe() for a in self.alerts.alerts.values()
                       if a.status in (AlertStatus.PENDING, AlertStatus.ACTIVE)],
            "fleet": self.fleet.status(),
            "alarms": self.alarms.views(),  # shared: scoped_status copies what it shows
            "store": {"queued": self.store.queued, "failed_writes": self.store.failed_writes,
                      "last_error": self.store.last_error,
                      "held_writes": self.store.held_writes,
                      "lost_writes": self.store.lost_writes,
                      "disk_error": self.store.disk_error},
            "schedule": {
                "items": len(self.schedule.items),
                "running": len(self.schedule.running),
                "lateness_ms": {
                    "max": round(1000 * max(self.schedule.lateness_s), 3)
                    if self.schedule.lateness_s else None,
                    "starts": len(self.schedule.lateness_s)},
            },
        }

    async def icecast_metadata(self, request: web.Request) -> web.Response:
        """Icecast's ``/admin/metadata`` for source clients: answers Icecast's XML
        ``<iceresponse>`` with the status of ``Mounts.update_metadata``. The query is read
        raw: its bytes are text only in the ``charset`` it names."""
        status, message = self.mounts.update_metadata(
            query_bytes(request.raw_path.partition("?")[2]),
            request.headers.get("Authorization", ""))
        body = ('<?xml version="1.0"?>\n<iceresponse><message>'
                f"{html.escape(message)}</message><return>{int(status == 200)}</return>"
                "</iceresponse>\n")
        headers = {"WWW-Authenticate": 'Basic realm="Loa source"'} if status == 401 else None
        return web.Response(status=status, text=body, content_type="text/xml", headers=headers)


def _saved_schedule(store: Store, now: datetime
                    ) -> tuple[list[ScheduleItem], list[tuple[ScheduleItem, datetime]]]:
    """Blocking (store reads; each rule expanded): the saved schedule items (one that no
    longer reads is logged and left out) and their slots missed since the last run's
    done-until and before ``now``, in order per item (none without a done-until)."""
    done = store.get_value("schedule_done_until")  # read first: the log task rewrites it
    items = []
    for rec in store.load_schedules():
        try:
            items.append(item_from_json(rec, rec["id"]))
        except ScheduleError as exc:
            log.error("schedule item %s ignored: %s", rec.get("id"), exc)
    if done is None:
        return items, []
    since = datetime.fromisoformat(done)
    return items, [(item, slot) for item in items for slot in item.slots(since, now)]


def _plays(content: ContentSpec, item: MediaItem) -> bool:
    """Whether the content plays the library item (by its id, or its file)."""
    if isinstance(content, MediaContent):
        return content.id == item.id
    if isinstance(content, PlaylistContent):
        return item.id in content.items
    return isinstance(content, FileContent) and content.path == item.path
