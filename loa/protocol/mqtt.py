"""The MQTT topic scheme, version 1, and the payloads on it (see docs/endpoint-protocol.md).

    {root}/v1/ep/{id}/state       endpoint → server, retained; the last will says offline
    {root}/v1/ep/{id}/telemetry   endpoint → server, at least once per heartbeat interval
    {root}/v1/ep/{id}/ack         endpoint → server, one per command id
    {root}/v1/ep/{id}/cmd         server → endpoint, QoS 1

Everything an endpoint sends is JSON, at most ``MAX_PAYLOAD_BYTES``, checked field by field
here; a message that fails is counted by reason and dropped, nothing else happens.
"""

from __future__ import annotations

import enum
import json
import re
import socket
from dataclasses import dataclass
from typing import Any

from loa.protocol.mqtt_client import aiomqtt

VERSION = "v1"
MAX_PAYLOAD_BYTES = 4096
ENDPOINT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Kind(enum.Enum):
    """The last topic level: what a message on it carries."""

    STATE = "state"
    TELEMETRY = "telemetry"
    ACK = "ack"
    CMD = "cmd"


FROM_ENDPOINT = (Kind.STATE, Kind.TELEMETRY, Kind.ACK)


class Op(enum.Enum):
    """The operations a cmd message can carry."""

    VOLUME = "volume"
    MUTE = "mute"
    UNMUTE = "unmute"
    POWER = "power"
    REBOOT = "reboot"
    PLAY = "play"
    STOP = "stop"
    MOVE = "move"


class PayloadError(ValueError):
    """A message from an endpoint that is refused; ``reason`` labels the counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Topics:
    """The v1 topic scheme under ``root`` (see the module docstring)."""

    root: str = "loa"

    @property
    def base(self) -> str:
        return f"{self.root}/{VERSION}"

    def topic(self, endpoint_id: str, kind: Kind) -> str:
        """One endpoint's topic of one kind."""
        return f"{self.base}/ep/{endpoint_id}/{kind.value}"

    def subscriptions(self) -> list[str]:
        """What the server listens to."""
        return [f"{self.base}/ep/+/{k.value}" for k in FROM_ENDPOINT]

    def parse(self, topic: str) -> tuple[str, Kind]:
        """(endpoint id, kind) of a topic; PayloadError (reason "topic") if it is not one of
        the scheme's."""
        prefix = f"{self.base}/ep/"
        if not topic.startswith(prefix):
            raise PayloadError("topic", f"topic {topic!r} is not under {prefix}")
        eid, sep, kind = topic[len(prefix):].partition("/")
        if not sep or not ENDPOINT_ID.match(eid):
            raise PayloadError("topic", f"topic {topic!r} names no endpoint")
        try:
            return eid, Kind(kind)
        except ValueError:
            raise PayloadError("topic", f"topic {topic!r}: unknown kind {kind!r}") from None


# field → (accepted types, low, high); numbers are range-checked, strings length-checked
_NUM = (int, float)
_SCHEMAS: dict[Kind, dict[str, tuple[tuple[type, ...], float, float]]] = {
    Kind.STATE: {
        "online": ((bool,), 0, 1),
        "zone": ((str,), 0, 64),
        "fw": ((str,), 0, 64),
        "volume_pct": ((int,), 0, 100),
        "muted": ((bool,), 0, 1),
        "power": ((bool,), 0, 1),
        "playing": ((bool,), 0, 1),
    },
    Kind.TELEMETRY: {
        "buffer_ms": (_NUM, 0, 600_000),
        "underruns": ((int,), 0, 2**53),
        "packet_loss_pct": (_NUM, 0, 100),
        "rssi_dbm": (_NUM, -200, 0),
        "supply_v": (_NUM, 0, 400),
        "relay": ((str,), 0, 16),
        "fw": ((str,), 0, 64),
        "uptime_s": (_NUM, 0, 2**53),
        "volume_pct": ((int,), 0, 100),
    },
    Kind.ACK: {
        "id": ((str,), 1, 64),
        "ok": ((bool,), 0, 1),
        "error": ((str,), 0, 200),
        "state": ((dict,), 0, 0),
    },
}
_REQUIRED = {Kind.STATE: ("online",), Kind.TELEMETRY: (), Kind.ACK: ("id", "ok")}
RELAY_STATES = ("ok", "tripped")


def decode(kind: Kind, payload: bytes) -> dict[str, Any]:
    """Parse and check a message from an endpoint; unknown fields are dropped (a newer
    firmware may send more), known ones must have the right type and range."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("size", f"payload of {len(payload)} bytes is over {MAX_PAYLOAD_BYTES}")
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise PayloadError("json", "payload is not JSON") from None
    if not isinstance(msg, dict):
        raise PayloadError("json", "payload must be a JSON object")
    schema = _SCHEMAS[kind]
    out: dict[str, Any] = {}
    for key, value in msg.items():
        spec = schema.get(key)
        if spec is None or value is None:
            continue
        types, lo, hi = spec
        bad = (isinstance(value, bool) and bool not in types) or not isinstance(value, types)
        if not bad and isinstance(value, _NUM) and not isinstance(value, bool):
            bad = not lo <= value <= hi
        if not bad and isinstance(value, str):
            bad = not lo <= len(value) <= hi
        if bad:
            raise PayloadError("type", f"{kind.value}.{key}: {value!r} is out of type or range")
        out[key] = value
    for key in _REQUIRED[kind]:
        if key not in out:
            raise PayloadError("type", f"{kind.value} needs {key!r}")
    if "relay" in out and out["relay"] not in RELAY_STATES:
        raise PayloadError("type", f"telemetry.relay must be one of {RELAY_STATES}")
    return out


def encode(msg: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as every message on the topics is sent."""
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()


OFFLINE = encode({"online": False})


NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def publish_nowait(client: aiomqtt.Client, topic: str, payload: bytes, qos: int = 1) -> None:
    """Queue a publish on the client's paho core without awaiting the broker's PUBACK.

    aiomqtt's ``publish`` costs ~0.2 ms of Python a message (a future, a pending-call entry
    and a warning when more than ten wait) and awaits each PUBACK; a zone-wide command is a
    thousand publishes at once, and what confirms it is the endpoint's own ack. paho writes
    the queue as the socket drains. Raises ``aiomqtt.MqttError`` if paho refuses it."""
    info = client._client.publish(topic, payload, qos=qos)  # noqa: SLF001
    if info.rc != 0:
        raise aiomqtt.MqttError(f"could not publish to {topic}: paho rc {info.rc}")
