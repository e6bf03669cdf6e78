"""The embedded MQTT broker (amqtt) on a port of its own, so ``loa serve`` needs nothing else.

It authenticates every client against the endpoint registry (per-endpoint ``$7$`` hashes) or
the server's own credentials, and enforces the topic ACL: an endpoint publishes only its own
state, telemetry and acks, sets its last will only on its own state, and subscribes only to its
own commands. For an external Mosquitto, ``loa endpoints mosquitto`` writes the same rules as a
password file and an ACL file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from loa.protocol.credentials import verify_password
from loa.protocol.mqtt import Kind, Topics

log = logging.getLogger(__name__)

SERVER_USER = "loa-server"
SHUTDOWN_S = 3.0
_AUTHORITIES: weakref.WeakValueDictionary[str, Authority] = weakref.WeakValueDictionary()


class BrokerError(OSError):
    """The embedded broker cannot start (its port is taken); the message says how to use
    the broker already there instead."""

    pass


class Authority:
    """Who may connect, and what each may publish and subscribe."""

    def __init__(self, topics: Topics, lookup: Callable[[str], str | None]) -> None:
        self.topics = topics
        self.lookup = lookup  # endpoint id → its password hash, or None if unknown
        self.server_password = secrets.token_urlsafe(24)
        self.key = secrets.token_hex(8)
        self.refused = 0
        _AUTHORITIES[self.key] = self

    def authenticate(self, username: str | None, password: str | None, client_id: str | None,
                     will_topic: str | None) -> bool:
        """MQTT CONNECT check: the server's own user by its generated password; an endpoint by
        its $7$ hash, with client id equal to its endpoint id (one session each) and a will, if
        any, only on its own state topic."""
        if not username or password is None:
            return False
        if username == SERVER_USER:
            return secrets.compare_digest(password, self.server_password)
        hashed = self.lookup(username)
        if hashed is None or not verify_password(password, hashed):
            return False
        if client_id != username:  # one session per endpoint, named by its id
            return False
        return will_topic is None or will_topic == self.topics.topic(username, Kind.STATE)

    def allowed(self, username: str | None, topic: str, action: Action) -> bool:
        """Topic ACL: the server may do anything; an endpoint may publish only its own
        state, telemetry and ack topics, and subscribe to (and receive) only its own cmd topic."""
        if username == SERVER_USER:
            return True
        if not username:
            return False
        if action is Action.PUBLISH:
            return topic in {self.topics.topic(username, k)
                             for k in (Kind.STATE, Kind.TELEMETRY, Kind.ACK)}
        return topic == self.topics.topic(username, Kind.CMD)  # SUBSCRIBE and RECEIVE


class LoaAuthPlugin(BaseAuthPlugin):
    """amqtt authentication plugin: asks the Authority registered under its config key,
    counts and logs refusals."""

    @dataclass
    class Config:
        authority: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        authority = _AUTHORITIES.get(self.config.authority)
        ok = authority is not None and authority.authenticate(
            session.username, session.password, session.client_id,
            session.will_topic if session.will_flag else None)
        if not ok:
            if authority is not None:
                authority.refused += 1
            log.warning("MQTT: refused client %r (user %r) from %s", session.client_id,
                        session.username, session.remote_address)
        return ok


class LoaTopicPlugin(BaseTopicPlugin):
    """amqtt topic-filter plugin: asks the Authority's ``allowed`` for every publish,
    subscribe and delivery; a missing authority or session is refused."""

    @dataclass
    class Config:
        authority: str = ""

    async def topic_filtering(self, *, session: Session | None = None, topic: str | None = None,
                              action: Action | None = None) -> bool | None:
        authority = _AUTHORITIES.get(self.config.authority)
        if authority is None or session is None or topic is None or action is None:
            return False
        ok = authority.allowed(session.username, topic, action)
        if not ok and action is not Action.RECEIVE:
            log.warning("MQTT: %s may not %s %s", session.username, action.value, topic)
        return ok


class _FilterIndex(dict[str, Any]):
    """amqtt's subscription table, which also keeps the set of its wildcard filters."""

    def __init__(self) -> None:
        super().__init__()
        self.wild: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        if "+" in key or "#" in key:
            self.wild.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.wild.discard(key)
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:
        self.wild.discard(key)
        return super().pop(key, *default)

    def clear(self) -> None:
        self.wild.clear()
        super().clear()


class _Broker(Broker):
    """amqtt 0.12.1's broker (the version is pinned), with three changes:

    - a leak closed: at every CONNECT it handed the new client the retained messages of
      *every* topic filter any client holds (at QoS 0), past the ACL. Here a client gets the
      retained messages of its own subscriptions only, and only those it may receive;
    - its broadcast matched every message against every subscription, formatting a debug
      line for each miss: with a thousand endpoints each holding its own command topic, a
      zone-wide command was a million matches. Here exact filters are found by a dict
      lookup and only wildcard filters are matched;
    - a socket leak closed: a connection's transport is closed when its session ends (see
      ``stream_connected``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions = _FilterIndex()

    async def stream_connected(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter, listener_name: str) -> None:
        """One TCP client, from accept to the end of its session; its transport is closed on
        the way out, whatever happened.

        amqtt 0.12.1 leaves it open when a client goes away abruptly: its
        ``StreamWriterAdapter.close()`` (amqtt/adapters.py) drains and calls ``write_eof()``
        before ``close()``, so when the peer has already reset, ``write_eof()`` raises
        ``OSError(ENOTCONN)``, ``close()`` is never reached and ``ProtocolHandler.stop()``
        (amqtt/mqtt/protocol/handler.py) swallows the error. The socket then waited for the
        garbage collector (a ResourceWarning in the tests). Nor does ``_client_connected``
        close a connection that ends before its first packet was read as a CONNECT."""
        try:
            await super().stream_connected(reader, writer, listener_name)
        finally:
            writer.close()  # idempotent: a no-op when amqtt did close it
            with contextlib.suppress(OSError):  # the reset that ended the session, again
                await writer.wait_closed()

    async def _run_broadcast(self, running_tasks: Any) -> None:
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        subs = self._subscriptions
        targets = list(subs.get(topic, ()))
        for k_filter in list(getattr(subs, "wild", subs)):
            if k_filter in subs and self._matches(topic, k_filter):
                targets += subs[k_filter]
        for target_session, sub_qos in targets:
            qos = broadcast.get("qos", sub_qos)
            if not await self._topic_filtering(target_session, topic=topic,
                                               action=Action.RECEIVE):
                continue
            connected = target_session.transitions.state == "connected"
            if (not connected and not target_session.clean_session and qos in (1, 2)
                    and not target_session.is_anonymous):
                await self._retain_broadcast_message(broadcast, qos, target_session)
                continue
            if not connected:
                continue
            handler = self._get_handler(target_session)
            if handler:
                running_tasks.append(asyncio.ensure_future(
                    handler.mqtt_publish(topic, broadcast["data"], qos, retain=False)))

    async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Session) -> None:
        topic_filter, qos = subscription
        holders = self._subscriptions.get(topic_filter, [])
        if not any(s.client_id == session.client_id for s, _ in holders):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            held_qos = max(q for s, q in holders if s.client_id == session.client_id)
            tasks.append(asyncio.ensure_future(handler.mqtt_publish(
                retained.topic, retained.data, min(held_qos, retained.qos or held_qos),
                retain=True)))
        if tasks:
            await asyncio.wait(tasks)


class EmbeddedBroker:
    """The amqtt broker Loa runs by default, on ``host:port`` (0: a free port), with the
    Authority's authentication and topic ACL."""

    def __init__(self, host: str, port: int, authority: Authority) -> None:
        self.host = host
        self.port = port
        self.authority = authority
        self._broker: _Broker | None = None

    async def start(self) -> None:
        """Start listening; raises BrokerError if the port is taken."""
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        if self.port == 0:
            self.port = _free_port(self.host)
        else:
            _check_free(self.host, self.port)
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}",
                                      "max_connections": 0}},
            "plugins": {
                f"{__name__}.LoaAuthPlugin": {"authority": self.authority.key},
                f"{__name__}.LoaTopicPlugin": {"authority": self.authority.key},
            },
        }
        self._broker = _Broker(config, loop=asyncio.get_running_loop())
        await self._broker.start()
        log.info("embedded MQTT broker on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Shut the broker down, waiting at most 3 s; errors are logged, never raised."""
        if self._broker is not None:
            broker, self._broker = self._broker, None
            try:  # a client caught half-connected can hold amqtt's shutdown: bounded
                await asyncio.wait_for(broker.shutdown(), SHUTDOWN_S)
            except TimeoutError:
                log.warning("the embedded MQTT broker did not stop within %g s", SHUTDOWN_S)
            except Exception:  # a half-closed session must not stop the server's shutdown
                log.exception("stopping the embedded MQTT broker")


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
                raise BrokerError(
                    exc.errno,
                    f"MQTT port {host}:{port} is taken (another broker, such as Mosquitto?): "
                    f"set [mqtt] url = \"mqtt://user:password@{host}:{port}\" to use that broker, "
                    "or [mqtt] listen to another port") from None
            raise
