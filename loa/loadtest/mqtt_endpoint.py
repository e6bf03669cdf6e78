"""The control side of a simulated endpoint (cụm loa) over MQTT: it says it is online (retained
state, with a last will that says offline), applies and acknowledges commands, and sends
telemetry. Its ``gain()`` is what its amplifier makes of the audio, so a decoding endpoint
hears the volume the server set.

Volume follows an audio taper: gain = (volume_pct / 100)², so 50 % is about −12 dB.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loa.core.lifecycle import cancel_and_wait
from loa.protocol.mqtt import NODELAY, OFFLINE, Kind, Op, Topics, encode, publish_nowait
from loa.protocol.mqtt_client import aiomqtt


def volume_gain(volume_pct: int) -> float:
    return (max(0, min(100, volume_pct)) / 100.0) ** 2


@dataclass
class Ack:
    command_id: str
    op: str
    attempt: int
    arrived_ns: int


@dataclass
class MqttEndpointState:
    volume_pct: int = 70
    muted: bool = False
    power: bool = True
    playing: bool = True
    zone: str | None = None
    underruns: int = 0
    buffer_ms: float = 200.0
    packet_loss_pct: float = 0.0
    rssi_dbm: float = -71.0
    supply_v: float = 12.6
    relay: str = "ok"
    acks: list[Ack] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # command ids applied (retries ack again)


class MqttEndpoint:
    def __init__(self, endpoint_id: str, password: str, host: str, port: int, *,
                 topic_root: str = "loa", telemetry_s: float = 30.0, fw: str = "loa-sim/1",
                 keepalive_s: int = 60, ack: bool = True, client_id: str | None = None,
                 now_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.id = endpoint_id
        # the MQTT client identifier: the endpoint id, as a cụm loa sends it (Loa's broker
        # takes the user name anyway); another where endpoints of several topic trees share
        # one broker, which would otherwise close one's session when the other connects
        self.client_id = client_id or endpoint_id
        self.password = password
        self.host = host
        self.port = port
        self.topics = Topics(topic_root)
        self.telemetry_s = telemetry_s
        self.fw = fw
        self.keepalive_s = keepalive_s
        self.ack = ack  # False: a broken firmware that never acknowledges
        self.now_ns = now_ns
        self.state = MqttEndpointState()
        self.connected = asyncio.Event()
        self.client: aiomqtt.Client | None = None
        self.on_command: Callable[[dict[str, Any]], None] | None = None
        self.error: str | None = None

    def gain(self) -> float:
        s = self.state
        return 0.0 if s.muted or not s.power or not s.playing else volume_gain(s.volume_pct)

    def _topic(self, kind: Kind) -> str:
        return self.topics.topic(self.id, kind)

    def _state(self, online: bool = True) -> bytes:
        s = self.state
        return encode({"online": online, "fw": self.fw, "volume_pct": s.volume_pct,
                       "muted": s.muted, "power": s.power, "playing": s.playing,
                       **({"zone": s.zone} if s.zone else {})})

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, announce, serve commands until ``stop`` (then say goodbye) or until the
        connection fails (the error is kept, and raised)."""
        will = aiomqtt.Will(self._topic(Kind.STATE), OFFLINE, qos=1, retain=True)
        try:
            async with aiomqtt.Client(self.host, self.port, username=self.id,
                                      password=self.password, identifier=self.client_id, will=will,
                                      keepalive=self.keepalive_s, timeout=10,
                                      socket_options=NODELAY) as client:
                self.client = client
                await client.subscribe(self._topic(Kind.CMD), qos=1)
                await client.publish(self._topic(Kind.STATE), self._state(), qos=1, retain=True)
                self.connected.set()
                telemetry = asyncio.create_task(self._telemetry(client))
                messages = asyncio.create_task(self._messages(client))
                waits: list[asyncio.Task[Any]] = [messages]
                if stop is not None:
                    waits.append(asyncio.create_task(stop.wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in waits + [telemetry]:
                        await cancel_and_wait(t)
                failed = messages.done() and not messages.cancelled() \
                    and messages.exception() is not None
                if failed:
                    raise messages.exception()  # type: ignore[misc]
                await client.publish(self._topic(Kind.STATE), self._state(False), qos=1,
                                     retain=True)
        except aiomqtt.MqttError as exc:
            self.error = str(exc)
            raise
        finally:
            self.client = None
            self.connected.clear()

    async def _messages(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, bytes):
                await self._command(client, json.loads(payload))

    async def _command(self, client: aiomqtt.Client, cmd: dict[str, Any]) -> None:
        s = self.state
        ok, error = True, None
        if cmd["id"] not in s.seen:  # a retry is acknowledged again, applied once
            s.seen.add(cmd["id"])
            op = cmd.get("op")
            if op == Op.VOLUME.value:
                s.volume_pct = int(cmd["volume_pct"])
                if "muted" in cmd:
                    s.muted = bool(cmd["muted"])
            elif op in (Op.MUTE.value, Op.UNMUTE.value):
                s.muted = op == Op.MUTE.value
            elif op == Op.POWER.value:
                s.power = bool(cmd["on"])
            elif op in (Op.PLAY.value, Op.STOP.value):
                s.playing = op == Op.PLAY.value
            elif op == Op.MOVE.value:
                s.zone = str(cmd["zone"])
                if "volume_pct" in cmd:
                    s.volume_pct = int(cmd["volume_pct"])
            elif op != Op.REBOOT.value:
                ok, error = False, f"unknown op {op!r}"
        if self.on_command is not None:
            self.on_command(cmd)
        if not self.ack:
            return
        s.acks.append(Ack(cmd["id"], str(cmd.get("op")), int(cmd.get("attempt", 1)),
                          self.now_ns()))
        body: dict[str, Any] = {"id": cmd["id"], "ok": ok,
                                "state": {"volume_pct": s.volume_pct, "muted": s.muted,
                                          "power": s.power, "playing": s.playing}}
        if error:
            body["error"] = error
        publish_nowait(client, self._topic(Kind.ACK), encode(body))

    async def send_telemetry(self) -> None:
        if self.client is not None:
            await self._send_telemetry(self.client)

    async def _send_telemetry(self, client: aiomqtt.Client) -> None:
        s = self.state
        await client.publish(self._topic(Kind.TELEMETRY), encode({
            "buffer_ms": s.buffer_ms, "underruns": s.underruns,
            "packet_loss_pct": s.packet_loss_pct, "rssi_dbm": s.rssi_dbm,
            "supply_v": s.supply_v, "relay": s.relay, "fw": self.fw,
            "volume_pct": s.volume_pct}), qos=0)

    async def _telemetry(self, client: aiomqtt.Client) -> None:
        while True:
            await self._send_telemetry(client)
            await asyncio.sleep(self.telemetry_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m loa.loadtest.mqtt_endpoint ID PASSWORD HOST PORT [TOPIC_ROOT]``: one
    simulated endpoint's control side, until killed (engineers try a broker with it)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (4, 5):
        print(main.__doc__, file=sys.stderr)
        return 2
    ep = MqttEndpoint(args[0], args[1], args[2], int(args[3]),
                      topic_root=args[4] if len(args) == 5 else "loa", telemetry_s=30)
    ep.on_command = lambda cmd: print(json.dumps(cmd), flush=True)
    try:
        asyncio.run(ep.run())
    except aiomqtt.MqttError as exc:
        print(f"MQTT: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
