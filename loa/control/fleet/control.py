"""The server's side of the MQTT control plane: presence, commands with acknowledgements and
retries, telemetry.

One aiomqtt connection carries everything. What the endpoints send is checked by
`loa.protocol.mqtt`; a bad message is counted and dropped. Timing (heartbeat timeouts, retries,
expiry) follows the injected clock, so tests drive it with a fake one; the broker connection
itself is real I/O and reconnects with a back-off when the broker goes away.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from loa.config import MqttConfig
from loa.control.endpoints import Endpoint, EndpointRegistry
from loa.core.clock import NS_PER_S, Clock
from loa.core.counters import Counters
from loa.core.i18n import N_, Explained, Message
from loa.core.zones import DEFAULT_VOLUME_PCT, ZoneTree, home_zone_id
from loa.protocol.mqtt import (
    NODELAY,
    Kind,
    Op,
    PayloadError,
    Topics,
    decode,
    encode,
    publish_nowait,
)
from loa.protocol.mqtt_client import aiomqtt

log = logging.getLogger(__name__)

TICK_NS = NS_PER_S
STOP_GRACE_S = 1.0
RECONNECT_S = (0.5, 1, 2, 5, 10)
MAX_COMMANDS_KEPT = 20_000
# a newer command of the same group supersedes an older one still waiting
GROUPS = {Op.VOLUME: "volume", Op.MUTE: "mute", Op.UNMUTE: "mute", Op.POWER: "power",
          Op.PLAY: "play", Op.STOP: "play", Op.MOVE: "move", Op.REBOOT: "reboot"}


class CommandError(Explained, ValueError):
    """A bad command body (answered 400, as a ValueError); the message says what to send."""


class CommandStatus(enum.StrEnum):
    """Where an endpoint command is: pending → sent → acked | failed | expired | superseded |
    cancelled. The values go out as they are (the API, the metrics' labels)."""

    PENDING = "pending"  # waiting for its endpoint to come online
    SENT = "sent"  # published, not acknowledged yet
    ACKED = "acked"
    FAILED = "failed"  # the endpoint refused it
    EXPIRED = "expired"  # not acknowledged within the command TTL
    SUPERSEDED = "superseded"  # a newer command of its group replaced it before it was done
    CANCELLED = "cancelled"  # its endpoint left the registry


FINAL = frozenset({CommandStatus.ACKED, CommandStatus.FAILED, CommandStatus.EXPIRED,
                   CommandStatus.SUPERSEDED, CommandStatus.CANCELLED})


@dataclass(eq=False)
class Command:
    """One command to one endpoint (``op`` and ``args``), part of a ``batch`` (a zone-wide
    command is one batch), with its status, attempts and times: ns on the injected clock,
    ``created_at`` unix seconds."""

    id: str
    endpoint_id: str
    op: Op
    args: dict[str, Any]
    batch: str
    actor: str
    reason: str
    created_ns: int
    created_at: float
    status: CommandStatus = CommandStatus.PENDING
    attempts: int = 0
    first_sent_ns: int | None = None
    last_sent_ns: int | None = None
    done_ns: int | None = None
    error: str | None = None

    @property
    def ack_ms(self) -> float | None:
        if self.status is not CommandStatus.ACKED or self.done_ns is None:
            return None
        return round((self.done_ns - self.created_ns) / 1e6, 3)

    def payload(self) -> bytes:
        """The cmd message: id, op, attempt number and the args, as compact JSON."""
        return encode({"id": self.id, "op": self.op.value, "attempt": self.attempts,
                       **self.args})

    def describe(self) -> dict[str, Any]:
        """The API view; ``ack_ms`` is creation to acknowledgement, in ms."""
        return {"id": self.id, "endpoint": self.endpoint_id, "op": self.op.value,
                "args": self.args, "batch": self.batch, "actor": self.actor,
                "reason": self.reason, "created_at": self.created_at,
                "status": self.status.value,
                "attempts": self.attempts, "ack_ms": self.ack_ms, "error": self.error}


NOT_SEEN = N_("not seen since the server started")  # an endpoint's presence until heard


@dataclass(eq=False)
class Health:
    """What the server knows of one endpoint at run time."""

    online: bool = False
    changed_ns: int = 0  # clock time of the last online/offline change
    changed_at: float = 0.0  # wall time of it
    last_seen_ns: int | None = None
    # why it is online or offline: ``reason`` in English (the presence history, the log),
    # ``why`` the same as a message, for the API to say in its caller's language
    why: Message = field(default_factory=lambda: Message(NOT_SEEN))
    reason: str = NOT_SEEN
    state: dict[str, Any] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)
    telemetry_at: float | None = None
    underruns: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=512))

    def describe(self) -> dict[str, Any]:
        """The API view of presence (``since`` as unix time), state and telemetry."""
        return {"online": self.online, "since": self.changed_at or None, "reason": self.reason,
                "state": self.state, "telemetry": self.telemetry,
                "telemetry_at": self.telemetry_at}


# control messages are small and answered: Nagle's algorithm would hold each back ~40 ms
def broker_params(url: str) -> dict[str, Any]:
    """aiomqtt.Client keyword arguments from ``mqtt[s]://user:password@host:port``."""
    split = urlsplit(url)
    if split.scheme not in ("mqtt", "mqtts") or not split.hostname:
        raise ValueError(f"MQTT URL {url!r} must be mqtt://host[:port] or mqtts://…")
    tls = split.scheme == "mqtts"
    return {"hostname": split.hostname, "port": split.port or (8883 if tls else 1883),
            "username": unquote(split.username) if split.username else None,
            "password": unquote(split.password) if split.password else None, "tls": tls}


class FleetControl:
    """The server's MQTT side (MQTT 3.1.1 via aiomqtt): presence and health per endpoint,
    commands with acks, retries and expiry, the desired state (volume %, mute, power) they
    carry, and telemetry. Timeouts and retries run on ``clock`` (ns); presence rows go to
    ``record_presence`` with wall times from ``wall`` (unix s)."""

    def __init__(self, config: MqttConfig, registry: EndpointRegistry, zones: ZoneTree,
                 clock: Clock, counters: Counters, wall: Callable[[], float] = time.time,
                 record_presence: Callable[[list[tuple[str, bool, float, str]]], None]
                 | None = None, *, on_zone_settings: Callable[[], None] | None = None,
                 alerting: Callable[[str], bool] | None = None) -> None:
        self.config = config
        self.topics = Topics(config.topic_root)
        self.registry = registry
        self.zones = zones
        self.clock = clock
        self.counters = counters
        self.wall = wall
        self.record_presence = record_presence
        self.health: dict[str, Health] = {}
        self.commands: dict[str, Command] = {}
        self._waiting: dict[str, dict[str, Command]] = {}  # endpoint → group → open command
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._presence_rows: list[tuple[str, bool, float, str]] = []
        self.ack_latency_ms: deque[float] = deque(maxlen=100_000)
        self.broker_url = ""
        self.client_params: dict[str, Any] = {}
        self.last_error: str | None = None
        self.on_zone_settings = on_zone_settings  # zone volumes changed: save them
        self.alerting = alerting  # zone id → an alert plays there (its volume then)
        self._stopping = False
        self.changed = asyncio.Event()  # set on every message and presence change (for waiters)
        registry.on_removed.append(self._forget)

    # lifecycle

    def start(self, url: str, username: str | None = None, password: str | None = None,
              *, run_clock: bool = True) -> None:
        """Connect to the broker at ``url`` (``username``/``password`` override the URL's) and
        keep reconnecting; with ``run_clock``, also run ``tick`` once a second. Raises
        ValueError for a URL that is not mqtt:// or mqtts://."""
        params = broker_params(url)
        if username is not None:
            params["username"], params["password"] = username, password
        self.broker_url = f"{'mqtts' if params['tls'] else 'mqtt'}://{params['hostname']}:" \
                          f"{params['port']}"
        self.client_params = params
        self._tasks.append(asyncio.create_task(self._connection(), name="mqtt"))
        if run_clock:
            self._tasks.append(asyncio.create_task(self._ticker(), name="mqtt-tick"))

    async def stop(self) -> None:
        """Ask paho to DISCONNECT (it closes the socket after) and let the connection task
        end by itself: cancelling aiomqtt while it connects can swallow the cancellation.
        Bounded: whatever has not ended after ``STOP_GRACE_S`` is cancelled and left."""
        self._stopping = True
        if self._client is not None:
            self._client._client.disconnect()
        connection = [t for t in self._tasks if t.get_name() == "mqtt"]
        if connection:
            await asyncio.wait(connection, timeout=STOP_GRACE_S)
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            if stuck:
                log.warning("MQTT: %d task(s) did not stop within %g s; left behind",
                            len(stuck), STOP_GRACE_S)
        self._tasks.clear()
        self.flush_presence()

    async def _connection(self) -> None:
        p = self.client_params
        tls_context = None
        if p["tls"]:
            tls_context = ssl.create_default_context(cafile=self.config.ca_file)
        for attempt in itertools.count():
            if self._stopping:
                return
            try:
                async with aiomqtt.Client(
                        p["hostname"], p["port"], username=p["username"], password=p["password"],
                        identifier=f"loa-server-{self._prefix}", tls_context=tls_context,
                        keepalive=30, max_inflight_messages=1000,
                        max_queued_outgoing_messages=100_000, timeout=10,
                        socket_options=NODELAY) as client:
                    self._client = client
                    if self._stopping:  # stop() came while we were connecting
                        return  # the context's exit says goodbye
                    await client.subscribe([(t, 1) for t in self.topics.subscriptions()])
                    self.connected.set()
                    self.last_error = None
                    log.info("MQTT connected to %s", self.broker_url)
                    self._resend_all()
                    attempt = 0
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else \
                            str(payload or "").encode()
                        self.on_message(message.topic.value, data)
            except aiomqtt.MqttError as exc:
                if self._stopping:
                    return
                self.last_error = str(exc)
                self.counters.inc("mqtt_disconnects")
                log.warning("MQTT broker %s: %s; retrying", self.broker_url, exc)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(RECONNECT_S[min(attempt, len(RECONNECT_S) - 1)])

    async def _ticker(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.now_ns() + TICK_NS)
            try:
                self.tick()
            except Exception:  # one bad record must not end presence and retries for good
                log.exception("fleet tick failed")

    # what the endpoints send

    def on_message(self, topic: str, payload: bytes) -> None:
        """One message from the broker; never raises."""
        self.changed.set()
        try:
            eid, kind = self.topics.parse(topic)
            if kind is Kind.CMD:
                return  # our own commands, if the broker echoes them
            if eid not in self.registry.endpoints:
                raise PayloadError("unknown_endpoint", f"{eid!r} is not in the registry")
            if not payload and kind is Kind.STATE:
                return  # a cleared retained state
            msg = decode(kind, payload)
        except PayloadError as exc:
            self.counters.inc("mqtt_rejected", reason=exc.reason)
            log.debug("MQTT message on %s refused: %s", topic, exc)
            return
        self.counters.inc("mqtt_received", kind=kind.value)
        now = self.clock.now_ns()
        h = self.health.setdefault(eid, Health())
        if kind is Kind.STATE:
            h.state = {k: v for k, v in msg.items() if k != "online"}
            if msg["online"]:
                h.last_seen_ns = now
                if h.online:  # (re)connected without our seeing it go
                    self._came_online(eid, h)
                self._set_online(eid, h, True, Message(N_("connected")))
            else:
                self._set_online(eid, h, False,
                                 Message(N_("disconnected (last will or goodbye)")))
            return
        h.last_seen_ns = now
        if not h.online:
            self._set_online(eid, h, True, Message(N_("heard from again")))
        if kind is Kind.TELEMETRY:
            h.telemetry = msg
            h.telemetry_at = self.wall()
            if "underruns" in msg:
                h.underruns.append((now, int(msg["underruns"])))
        elif kind is Kind.ACK:
            self._on_ack(eid, msg, now)

    def _on_ack(self, eid: str, msg: dict[str, Any], now: int) -> None:
        cmd = self.commands.get(msg["id"])
        if cmd is None or cmd.endpoint_id != eid:
            self.counters.inc("mqtt_rejected", reason="unknown_command")
            return
        if cmd.status in FINAL:
            return  # a repeated ack of a retried command
        cmd.done_ns = now
        if msg["ok"]:
            cmd.status = CommandStatus.ACKED
            self.ack_latency_ms.append((now - cmd.created_ns) / 1e6)
        else:
            cmd.status = CommandStatus.FAILED
            cmd.error = str(msg.get("error") or "refused by the endpoint")
        if isinstance(msg.get("state"), dict):
            self.health[eid].state.update(
                {k: v for k, v in msg["state"].items() if k in ("volume_pct", "muted", "power",
                                                                 "playing", "zone")})
        self.counters.inc("commands_done", status=cmd.status.value)
        self._close(cmd)

    def _set_online(self, eid: str, h: Health, online: bool, why: Message) -> None:
        if h.online == online and h.changed_ns:
            return
        reason = str(why)
        h.online, h.reason, h.why = online, reason, why
        h.changed_ns, h.changed_at = self.clock.now_ns(), self.wall()
        self.changed.set()
        self._presence_rows.append((eid, online, h.changed_at, reason))
        log.info("endpoint %s %s: %s", eid, "online" if online else "offline", reason)
        if online:
            self._came_online(eid, h)

    def _came_online(self, eid: str, h: Health) -> None:
        """What waits for it goes now; and if it reports other settings than it should have
        (it was offline when they changed, or it rebooted), it is sent them."""
        self._resend(eid)
        ep = self.registry.endpoints.get(eid)
        if ep is None or not h.state or GROUPS[Op.VOLUME] in self._waiting.get(eid, {}):
            return
        alerting = self.alerting is not None and self.alerting(ep.zone_id)
        want = self._audio(ep, alerting)
        if any(k in h.state and h.state[k] != v for k, v in want.items()):
            self.send([eid], Op.VOLUME, want, "loa", reason="sync")
        if "power" in h.state and h.state["power"] != ep.power_on \
                and GROUPS[Op.POWER] not in self._waiting.get(eid, {}):
            self.send([eid], Op.POWER, {"on": ep.power_on}, "loa", reason="sync")

    def flush_presence(self) -> None:
        """Hand the presence changes gathered since the last flush to ``record_presence``."""
        rows, self._presence_rows = self._presence_rows, []
        if rows and self.record_presence is not None:
            self.record_presence(rows)

    # commands

    def send(self, endpoint_ids: Iterable[str], op: Op, args: dict[str, Any] | Callable[
            [Endpoint], dict[str, Any]], actor: str, reason: str = "operator") -> list[Command]:
        """A command for each endpoint (args may depend on the endpoint); sent now to those
        online, on their return to the others, again every ``retry_s`` until acknowledged."""
        batch = f"b{self._prefix}{next(self._ids)}"
        now, wall = self.clock.now_ns(), self.wall()
        out = []
        for eid in endpoint_ids:
            ep = self.registry.endpoints.get(eid)
            if ep is None:
                continue
            cmd = Command(f"c{self._prefix}{next(self._ids)}", eid, op,
                          args(ep) if callable(args) else dict(args), batch, actor, reason,
                          now, wall)
            group = self._waiting.setdefault(eid, {})
            old = group.get(GROUPS[op])
            if old is not None and old.status not in FINAL:
                old.status, old.done_ns = CommandStatus.SUPERSEDED, now
                self.counters.inc("commands_done", status=CommandStatus.SUPERSEDED.value)
            group[GROUPS[op]] = cmd
            self.commands[cmd.id] = cmd
            out.append(cmd)
        self._trim()
        self.counters.inc("commands_sent", len(out), op=op.value)
        self._publish([c for c in out if self.is_online(c.endpoint_id)])
        return out

    def is_online(self, eid: str) -> bool:
        """Whether endpoint ``eid`` is online now; ``False`` for one never heard from."""
        h = self.health.get(eid)
        return h is not None and h.online

    def _publish(self, cmds: list[Command]) -> None:
        """Send now (QoS 1, not awaited: the endpoint's ack is the confirmation that counts;
        a command that is not acknowledged goes again after ``retry_s``)."""
        client = self._client
        if not cmds or client is None:
            return
        now = self.clock.now_ns()
        for cmd in cmds:
            cmd.attempts += 1
            cmd.status = CommandStatus.SENT
            cmd.last_sent_ns = now
            if cmd.first_sent_ns is None:
                cmd.first_sent_ns = now
            try:
                publish_nowait(client, self.topics.topic(cmd.endpoint_id, Kind.CMD),
                               cmd.payload())
            except aiomqtt.MqttError as exc:
                cmd.error = f"publish failed: {exc}"  # retried on the next tick

    def _resend(self, eid: str) -> None:
        open_cmds = [c for c in self._waiting.get(eid, {}).values() if c.status not in FINAL]
        self._publish(sorted(open_cmds, key=lambda c: c.created_ns))

    def _resend_all(self) -> None:
        self._publish([c for g in self._waiting.values() for c in g.values()
                       if c.status not in FINAL and self.is_online(c.endpoint_id)])

    def _close(self, cmd: Command) -> None:
        group = self._waiting.get(cmd.endpoint_id, {})
        if group.get(GROUPS[cmd.op]) is cmd:
            del group[GROUPS[cmd.op]]

    def _trim(self) -> None:
        if len(self.commands) <= MAX_COMMANDS_KEPT:
            return
        for cid in list(self.commands)[:len(self.commands) - MAX_COMMANDS_KEPT]:
            if self.commands[cid].status in FINAL:
                del self.commands[cid]

    def _forget(self, eid: str) -> None:
        for cmd in self._waiting.pop(eid, {}).values():
            if cmd.status not in FINAL:
                cmd.status = CommandStatus.CANCELLED
        h = self.health.pop(eid, None)
        if h is not None and h.online:
            self._presence_rows.append((eid, False, self.wall(), "removed from the registry"))

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checked on every message (TimeoutError)."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def batch(self, batch_id: str) -> list[Command]:
        """The commands of one batch still kept."""
        return [c for c in self.commands.values() if c.batch == batch_id]

    # once a second: heartbeat timeouts, retries, expiry

    def tick(self) -> None:
        """Once a second: mark silent endpoints offline after the heartbeat timeout, expire
        commands past their TTL, resend unacknowledged ones to online endpoints every
        ``retry_s``, and flush presence."""
        now = self.clock.now_ns()
        timeout_ns = int(self.config.heartbeat_timeout_s * NS_PER_S)
        for eid, h in self.health.items():
            if h.online and h.last_seen_ns is not None and now - h.last_seen_ns > timeout_ns:
                self._set_online(eid, h, False, Message(
                    N_("no word for {seconds} s"),
                    {"seconds": f"{self.config.heartbeat_timeout_s:g}"}))
        retry_ns = int(self.config.retry_s * NS_PER_S)
        ttl_ns = int(self.config.command_ttl_s * NS_PER_S)
        again = []
        for group in self._waiting.values():
            for cmd in list(group.values()):
                if cmd.status in FINAL:
                    continue
                if now - cmd.created_ns > ttl_ns:
                    cmd.status, cmd.done_ns = CommandStatus.EXPIRED, now
                    cmd.error = cmd.error or ("never acknowledged" if cmd.attempts
                                              else "the endpoint never came online")
                    self.counters.inc("commands_done", status=CommandStatus.EXPIRED.value)
                    self._close(cmd)
                elif (self.is_online(cmd.endpoint_id) and cmd.last_sent_ns is not None
                      and now - cmd.last_sent_ns >= retry_ns):
                    self.counters.inc("commands_retried")
                    again.append(cmd)
        self._publish(again)
        self.flush_presence()

    # what the API and metrics read

    def online_count(self, zone_id: str | None = None) -> int:
        """Endpoints online, in the zone and below it (or everywhere)."""
        eps = self.registry.in_zone(zone_id) if zone_id else self.registry.endpoints.values()
        return sum(1 for ep in eps if self.is_online(ep.id))

    def describe(self, ep: Endpoint, language: str | None = None) -> dict[str, Any]:
        """An endpoint's API view with its effective volume (%) and presence; its presence's
        ``reason`` in ``language`` (None: English)."""
        h = self.health.get(ep.id) or Health()
        presence = h.describe()
        if language is not None:
            presence["reason"] = h.why.say(language)
        return {**ep.describe(), "effective_volume_pct": self.effective_volume(ep),
                "presence": presence}

    def effective_volume(self, ep: Endpoint) -> int:
        """The volume (%) the endpoint should play at: its own override, else its home zone's."""
        if ep.volume_pct is not None:
            return ep.volume_pct
        zone_id = home_zone_id(ep.zone_id)  # an alert group follows its home zone
        return self.zones.get(zone_id).volume_pct if zone_id in self.zones \
            else DEFAULT_VOLUME_PCT

    def open_commands(self) -> list[Command]:
        """The commands still open (sent or waiting to be, not yet acknowledged, failed,
        expired or superseded), every endpoint's."""
        return [c for g in self._waiting.values() for c in g.values() if c.status not in FINAL]

    def status(self) -> dict[str, Any]:
        """Broker URL and connection, endpoints known and online, commands still open."""
        open_cmds = len(self.open_commands())
        return {"broker": self.broker_url, "connected": self.connected.is_set(),
                "last_error": self.last_error, "endpoints": len(self.registry.endpoints),
                "online": self.online_count(), "commands_open": open_cmds}

    # operations: desired state, then the commands that carry it

    def zone_command(self, zone_id: str, body: dict[str, Any], actor: str) -> list[Command]:
        """A command to every endpoint of the zone and the zones below it. Volume sets the
        zones' volume and sends each endpoint its effective volume (its own override, if it
        has one and ``clear_overrides`` is not set)."""
        op, args = parse_command(body, zone=True)
        zones = self.zones.subtree(zone_id)
        eps = self.registry.in_zone(zone_id)
        if op is Op.VOLUME:
            for z in zones:
                z.volume_pct = args["volume_pct"]
            if self.on_zone_settings is not None:
                self.on_zone_settings()
            cleared = [ep for ep in eps
                       if body.get("clear_overrides") and ep.volume_pct is not None]
            for ep in cleared:
                ep.volume_pct = None
            self.registry.save_many(cleared)
            return self.send([e.id for e in eps], op, self._volume_args, actor)
        self._apply_desired(eps, op, args)
        return self.send([e.id for e in eps], op, args, actor)

    def endpoint_command(self, eid: str, body: dict[str, Any], actor: str) -> list[Command]:
        """Apply an API command body to one endpoint: set the desired state (a volume of
        None follows the zone again; a move re-homes it) and send it. Raises ValueError for a
        bad body, ZoneError for an unknown zone, EndpointError for an unknown endpoint."""
        op, args = parse_command(body, zone=False)
        ep = self.registry.get(eid)
        if op is Op.VOLUME:
            ep.volume_pct = args["volume_pct"]  # None: follow the zone again
            self.registry.save(ep)
            return self.send([eid], op, self._volume_args, actor)
        if op is Op.MOVE:
            self.registry.move(eid, args["zone"])
            return self.send([eid], op, {"zone": args["zone"],
                                         "volume_pct": self.effective_volume(ep)}, actor)
        self._apply_desired([ep], op, args)
        return self.send([eid], op, args, actor)

    def _apply_desired(self, eps: list[Endpoint], op: Op, args: dict[str, Any]) -> None:
        if op not in (Op.MUTE, Op.UNMUTE, Op.POWER):
            return
        for ep in eps:
            if op is Op.POWER:
                ep.power_on = bool(args["on"])
            else:
                ep.muted = op is Op.MUTE
        self.registry.save_many(eps)  # one store write for a whole zone

    def _volume_args(self, ep: Endpoint) -> dict[str, Any]:
        return {"volume_pct": self.effective_volume(ep)}

    def _audio(self, ep: Endpoint, alerting: bool) -> dict[str, Any]:
        """Volume and mute the endpoint should have: during an alert its zone's alert volume,
        unmuted; otherwise its own."""
        if alerting:
            zone = self.zones.get(ep.zone_id) if ep.zone_id in self.zones else None
            return {"volume_pct": zone.alert_volume_pct if zone else 100, "muted": False}
        return {"volume_pct": self.effective_volume(ep), "muted": ep.muted}

    def alert_volume(self, zone_ids: list[str], alert_id: str, raise_it: bool,
                     skip: Callable[[str], bool] = lambda zone_id: False) -> list[Command]:
        """Raise every targeted endpoint to its zone's alert volume (unmuted) for an alert,
        or put back its own volume and mute after it; ``skip(zone)`` keeps a zone that
        another alert still covers."""
        eps: dict[str, Endpoint] = {}
        for zid in zone_ids:
            if zid in self.zones:
                for ep in self.registry.in_zone(zid):
                    if raise_it or not skip(ep.zone_id):
                        eps[ep.id] = ep

        def args(ep: Endpoint) -> dict[str, Any]:
            return {**self._audio(ep, raise_it), "alert": alert_id}

        return self.send(list(eps), Op.VOLUME, args, "loa",
                         reason="alert" if raise_it else "alert-ended")


def parse_command(body: dict[str, Any], *, zone: bool) -> tuple[Op, dict[str, Any]]:
    """``{"op": "volume", "volume_pct": 80}``, ``{"op": "power", "on": false}``,
    ``{"op": "move", "zone": "…"}`` (one endpoint), ``{"op": "mute"|"unmute"|"reboot"|"play"|
    "stop"}``; raises CommandError (a ValueError) with the reason."""
    try:
        op = Op(body.get("op"))
    except ValueError:
        raise CommandError(N_("op must be one of {ops}"),
                           ops=", ".join(o.value for o in Op)) from None
    if op is Op.VOLUME:
        pct = body.get("volume_pct")
        if pct is None and not zone:
            return op, {"volume_pct": None}
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise CommandError(N_("volume_pct must be an integer from 0 to 100") if zone else
                               N_("volume_pct must be an integer from 0 to 100 (or null to "
                                  "follow the zone)"))
        return op, {"volume_pct": pct}
    if op is Op.POWER:
        on = body.get("on")
        if not isinstance(on, bool):
            raise CommandError(N_('power needs "on": true or false'))
        return op, {"on": on}
    if op is Op.MOVE:
        if zone:
            raise CommandError(N_("move is for one endpoint: POST {path}"),
                               path="/api/v1/endpoints/{id}/commands")
        target = body.get("zone")
        if not isinstance(target, str) or not target:
            raise CommandError(N_('move needs "zone"'))
        return op, {"zone": target}
    return op, {}
