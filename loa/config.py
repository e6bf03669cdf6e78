"""Configuration: embedded defaults, then a TOML file, then ``LOA_*`` environment variables.

Everything has a default, so ``loa serve`` runs the whole job with no file at all.

    listen = "127.0.0.1:8080"
    data_dir = "loa-data"
    demo = true                      # a chime on the whole tree at fill priority

    [source]
    password = "..."                 # or LOA_SOURCE_PASSWORD; generated on first start if unset
    timeout_s = 10                   # a connected source that sends nothing this long is
                                     # dropped (Icecast's source-timeout); a new source with
                                     # the password replaces a stalled one at once
    [mounts.studio]
    password = "..."                 # a mount's own password overrides the global one

    [audio]
    opus_bitrate_bps = 32000
    mp3_bitrate_bps = 64000
    jitter_target_ms = 40            # live inputs: buffered before playing, at first; then
                                     # the target follows the jitter measured, down to 20 ms
                                     # on a steady source (loa/playout/jitter.py)
    jitter_max_ms = 2000             # adaptive target ceiling and overflow bound
    loudness_target_lufs = -18.0     # files and speech play normalised to this (BS.1770)
    max_upload_mb = 50               # media uploads above this are refused
    live_agc = true                  # live feeds and relays brought slowly to the target too
    source_stall_ms = 3000           # a connected source silent this long counts as down

    [fanout]
    burst_ms = 200                   # what a new listener gets from the recent past
    backlog_ms = 2000                # a listener further behind than this is cut off
    sndbuf_bytes = 16384             # kernel send buffer per listener
    http_batch_ms = 40               # Ogg/MP3 listeners get packets in batches this long...
    http_batch_above = 200           # ...on a zone stream with more listeners than this; fewer
                                     # get every packet at once: 20 ms less heard delay on
                                     # average, for one send() per packet instead of per batch
                                     # (measured on loopback: about 2.4 % of a core more at 200
                                     # listeners; 0 batches every audience)
    http_batch_large_ms = 80         # ...and batches this long on a zone stream with more
    http_batch_large_above = 400     # listeners than this (>= http_batch_above; twice it when
                                     # only that is set): half the send() calls again, the CPU
                                     # that dominates at scale, for up to one batch of heard
                                     # delay (0 ms: no second tier; batches are whole 20 ms
                                     # packets, rounded down)

    [[zones]]
    id = "huyen"
    name = "Huyện"
    parent = ""                      # empty for the root(s)
    admin_code = "..."

    [alerts]
    tone_s = 2.0                     # the attention tone before every alert message
    gap_s = 2.0                      # silence between repeats
    cap_test_zone = "..."            # CAP Exercise/Test messages play here (default: log only)

    [[tokens]]                       # more API tokens: a SHA-256, never the token itself
    name = "truc-ban"
    sha256 = "…"
    rights = ["operate"]             # admin, operate, alert (emergency alerts)

    [[endpoints]]                    # seeded into the registry on first sight; the API
                                     # owns them after
    id = "loa-001"
    zone = "an-binh-1"
    name = "Cụm loa thôn 1"
    address = "..."
    admin_code = "..."

    [mqtt]
    url = "embedded"                 # Loa's own broker: a Mosquitto that Loa starts (Debian's
                                     # package `mosquitto`), feeds the registry's logins and
                                     # ACL and restarts if it dies, files in data_dir/mosquitto;
                                     # or "mqtt://user:password@host:1883", "mqtts://…" (TLS)
                                     # for a broker of your own (`loa endpoints mosquitto`)
    listen = "127.0.0.1:1884"        # Loa's own broker, or LOA_MQTT_LISTEN (1883 is often
                                     # the machine's Mosquitto already)
    topic_root = "loa"
    ca_file = "..."                  # mqtts: the CA to trust (default: the system's)
    heartbeat_s = 30                 # endpoints send telemetry at least this often
    heartbeat_timeout_s = 90         # no word for this long: offline
    retry_s = 5                      # unacknowledged commands are sent again this often
    command_ttl_s = 600              # and given up after this long

    [alarms]
    offline_minutes = 10             # an endpoint offline longer than this raises an alarm
    hold_s = 10                      # other conditions must last this long
    underruns_max = 10               # underruns per window above this raise an alarm
    underrun_window_s = 300
    supply_v_min = 11.0              # supply voltage outside this band raises an alarm
    supply_v_max = 15.0
    loop_lag_ms = 50                 # the event loop woke this late: the audio is at risk

    [network]                        # what relays (and their playlists, HLS, redirects) and
                                     # CAP resources may fetch, checked on every address
                                     # connected to (after DNS, on every redirect). Denied
                                     # unless allowed: loopback, private (RFC 1918),
                                     # link-local (cloud metadata), CGNAT, unique-local,
                                     # multicast, unspecified, reserved, and their IPv4-mapped
                                     # IPv6 forms. Any port. Entries: networks, addresses,
                                     # host names (the URL's), "*.domain" (its subdomains).
    fetch_allow = ["10.20.0.0/16", "studio.lan"]  # lifts the default denials for these
    fetch_deny = ["203.0.113.0/24"]  # never fetched, even when allowed

    [tls]                            # the port speaks HTTPS, WSS and TLS for sources (RFC
                                     # 2818, and libshout's RFC 2817 upgrade); or put a
                                     # reverse proxy in front (README, "TLS")
    cert_file = "/etc/loa/fullchain.pem"   # PEM certificate chain
    key_file = "/etc/loa/privkey.pem"      # PEM private key (default: inside cert_file)
    allow_plain = false              # also serve plain HTTP (endpoints that have no TLS);
                                     # otherwise a plain request gets 426 Upgrade Required

    [limits]                         # hostile clients (issue 13)
    connections_per_address = 256    # open at once per client address (an IPv6 /64 counts
                                     # as one; 0: no cap). Endpoints behind one carrier-grade
                                     # NAT share an address: keep it above their number
    exempt = ["127.0.0.1", "::1"]    # addresses/networks without that cap (a reverse proxy,
                                     # a load tester)
    fd_reserve = 128                 # descriptors kept for the API and sources: below it,
                                     # idle connections are closed and listeners wait (503)
    trusted_proxies = ["127.0.0.1", "::1"]  # their X-Forwarded-For names the client
    failures_free = 5                # wrong passwords/tokens per address answered at once;
    failure_delay_max_s = 30         # later ones are held 1, 2, 4 … s, up to this (0: off)

    [webrtc]                         # WHIP sources and WHEP viewers (issue 16)
    public_address = "203.0.113.7"   # 1:1 NAT: host candidates announced with this address
    udp_ports = "40000-40100"        # the UDP ports media binds to (one a session); open
                                     # them in the firewall (default: any port)
    addresses = ["192.0.2.2"]        # where host candidates are gathered (default: the
                                     # listen address; every interface when it is 0.0.0.0)
    cors_origins = ["*"]             # web origins whose pages may use WHIP/WHEP
    max_sources = 8                  # WHIP sources at once (connecting ones included)
    max_viewers = 64                 # WHEP viewers at once, a limit of their own (an older
                                     # config's max_sessions is read as this)
    rtp_gone_s = 10                  # a WHIP source without RTP this long ends; after 1 s
                                     # its zones fall back, and rejoin it if RTP comes back
    preload = false                  # import aiortc at start-up, not at the first request
    [[webrtc.ice_servers]]           # STUN/TURN for peers behind NAT (none by default:
    url = "stun:stun.example.org:3478"   # nothing leaves the machine unless configured)
    [[webrtc.ice_servers]]
    url = "turn:turn.example.org:3478?transport=udp"
    username = "loa"                 # TURN needs a username and a credential
    credential = "…"

    [sessions]                       # the browser's logins to accounts (issue 14)
    idle_timeout_min = 30            # a session unused this long ends: log in again
    login_failures = 5               # wrong passwords per username, and per address, after
                                     # which logins are refused (429) until one is forgotten
    login_forget_s = 60              # one such failure is forgotten this often
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loa.codecs.loudness import DEFAULT_TARGET_LUFS
from loa.core.endpoint import EndpointInfo
from loa.core.fetch_policy import FetchPolicy, FetchRule
from loa.core.i18n import N_, Explained, Message
from loa.core.peers import AddressSet
from loa.core.throttle import FREE_FAILURES, MAX_DELAY_S
from loa.core.zones import Zone
from loa.playout.admission import EXEMPT, PER_ADDRESS, RESERVE_FDS
from loa.playout.webrtc import RTP_TIMEOUT_S, IceServer, WebRtcSettings, parse_port_range


class ConfigError(Explained, ValueError):
    """A setting of the TOML file or the environment that cannot be used; the message (said
    by ``loa serve`` in its language) names it and what it may be."""


def _message_of(exc: Exception) -> Message:
    """What ``exc`` says, still to be said in its reader's language: an ``Explained`` error's
    Message, else its text (translated only if it is a msgid of the catalogue)."""
    return exc.message if isinstance(exc, Explained) else Message(str(exc))


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """An API token beside the admin's: its SHA-256 (never the token) and its rights."""

    name: str
    sha256: str
    rights: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The fleet's MQTT settings (see the module docstring). ``url`` "embedded" means Loa's
    own broker (a supervised Mosquitto on ``listen_host:listen_port``); anything else is a
    broker Loa only connects to."""

    url: str = "embedded"
    listen_host: str = "127.0.0.1"
    listen_port: int = 1884
    topic_root: str = "loa"
    ca_file: str | None = None
    heartbeat_s: float = 30.0
    heartbeat_timeout_s: float = 90.0
    retry_s: float = 5.0
    command_ttl_s: float = 600.0

    @property
    def embedded(self) -> bool:
        """Whether Loa runs the broker itself (``url = "embedded"``)."""
        return self.url == "embedded"


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    offline_minutes: float = 10.0
    hold_s: float = 10.0
    underruns_max: int = 10
    underrun_window_s: float = 300.0
    supply_v_min: float = 11.0
    supply_v_max: float = 15.0
    loop_lag_ms: float = 50.0


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``[tls]``: the certificate and key the public port serves TLS with (none: plain HTTP),
    and whether plain HTTP is served beside it."""

    cert_file: str | None = None
    key_file: str | None = None  # None: the key is in cert_file
    allow_plain: bool = False

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: what one client address may hold and try (``loa.playout.admission``,
    ``loa.core.throttle``)."""

    connections_per_address: int = PER_ADDRESS
    # loopback: a reverse proxy or a load tester on this machine (local processes are trusted)
    exempt: AddressSet = field(default_factory=lambda: AddressSet(EXEMPT))
    fd_reserve: int = RESERVE_FDS
    trusted_proxies: AddressSet = field(default_factory=lambda: AddressSet(EXEMPT))
    failures_free: int = FREE_FAILURES
    failure_delay_max_s: float = MAX_DELAY_S


@dataclass(frozen=True, slots=True)
class SessionsConfig:
    """``[sessions]``: browser sessions of accounts (``loa.control.accounts``): the idle
    timeout (s), and the wrong passwords per username and per address (``login_failures``)
    after which logins are refused until one is forgotten (one every ``login_forget_s``)."""

    idle_timeout_s: float = 30 * 60.0
    login_failures: int = 5
    login_forget_s: float = 60.0


# An account's password (``loa.control.accounts``), here so that LOA_ADMIN_PASSWORD is checked
# with the rest of the configuration, before the server starts.
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; this bounds the work a request asks


def default_zones() -> list[Zone]:
    """A small district: two communes, two villages each."""
    return [
        Zone("huyen", "Huyện Mẫu", None, "000"),
        Zone("an-binh", "Xã An Bình", "huyen", "00001"),
        Zone("an-binh-1", "Thôn An Bình 1", "an-binh"),
        Zone("an-binh-2", "Thôn An Bình 2", "an-binh"),
        Zone("phu-my", "Xã Phú Mỹ", "huyen", "00002"),
        Zone("phu-my-1", "Thôn Phú Mỹ 1", "phu-my"),
        Zone("phu-my-2", "Thôn Phú Mỹ 2", "phu-my"),
    ]


def default_endpoints() -> list[EndpointInfo]:
    villages = ["an-binh-1", "an-binh-2", "phu-my-1", "phu-my-2"]
    # demo coordinates: two villages a commune, a few km apart
    centres = [(15.50, 108.00), (15.52, 108.02), (15.60, 108.10), (15.62, 108.12)]
    return [
        EndpointInfo(f"loa-{i + 1:03d}", villages[i // 2], f"Cụm loa {i + 1}",
                       centres[i // 2][0] + 0.001 * (i % 2), centres[i // 2][1])
        for i in range(8)
    ]


@dataclass(frozen=True)
class Config:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    data_dir: Path = Path("loa-data")
    demo: bool = True
    source_password: str | None = None
    source_timeout_s: float = 10.0  # Icecast's source-timeout
    mount_passwords: dict[str, str] = field(default_factory=dict)
    admin_token: str | None = None
    admin_password: str | None = None  # the first admin's, at the first start (no account yet)
    opus_bitrate_bps: int = 32_000
    mp3_bitrate_bps: int = 64_000
    jitter_target_ms: int = 40
    jitter_max_ms: int = 2_000
    source_stall_ms: int = 3_000
    loudness_target_lufs: float = DEFAULT_TARGET_LUFS
    max_upload_mb: int = 50
    live_agc: bool = True
    burst_ms: int = 200
    backlog_ms: int = 2_000
    sndbuf_bytes: int = 16_384
    http_batch_ms: int = 40
    http_batch_above: int = 200
    http_batch_large_ms: int = 80
    http_batch_large_above: int = 400
    zones: list[Zone] = field(default_factory=default_zones)
    endpoints: list[EndpointInfo] = field(default_factory=default_endpoints)
    tokens: list[TokenConfig] = field(default_factory=list)
    alert_tone_s: float = 2.0
    alert_gap_s: float = 2.0
    cap_test_zone: str | None = None  # where CAP Exercise/Test messages play (else: log only)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)  # [network] fetch_*
    tls: TlsConfig = field(default_factory=TlsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    webrtc: WebRtcSettings = field(default_factory=WebRtcSettings)

    @property
    def bitrates_bps(self) -> dict[str, int]:
        return {"opus": self.opus_bitrate_bps, "mp3": self.mp3_bitrate_bps}

    def redacted(self) -> dict[str, Any]:
        """For logs: never a secret."""
        return {
            "listen": f"{self.listen_host}:{self.listen_port}",
            "data_dir": str(self.data_dir),
            "zones": len(self.zones),
            "endpoints": len(self.endpoints),
            "mounts": sorted(self.mount_passwords),
            "mqtt": "embedded" if self.mqtt.embedded else _redact_url(self.mqtt.url),
        }


def _redact_url(url: str) -> str:
    """An MQTT URL without its password."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}{sep}{creds.partition(':')[0]}:***@{host}"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(N_("listen address {value!r} must be HOST:PORT"), value=value)
    return host.strip("[]") or "127.0.0.1", int(port)


def _int(section: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = section.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(N_("{key} must be an integer from {lo} to {hi}, not {value!r}"),
                          key=key, lo=lo, hi=hi, value=v)
    return v


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    cfg = Config()
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(N_("cannot read config {path}: {reason}"),
                              path=os.path.abspath(path), reason=exc.strerror) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(N_("config {path} is not valid TOML: {reason}"), path=str(path),
                              reason=str(exc)) from None
        cfg = apply_toml(cfg, raw)
    return _apply_env(cfg, env)


def apply_toml(cfg: Config, raw: dict[str, Any]) -> Config:
    """``cfg`` with the settings of a parsed TOML file applied; ``ConfigError`` on a bad one."""
    changes: dict[str, Any] = {}
    if "listen" in raw:
        changes["listen_host"], changes["listen_port"] = parse_listen(str(raw["listen"]))
    if "data_dir" in raw:
        changes["data_dir"] = Path(str(raw["data_dir"]))
    if "demo" in raw:
        changes["demo"] = bool(raw["demo"])
    source = raw.get("source", {})
    if "password" in source:
        changes["source_password"] = str(source["password"])
    changes["source_timeout_s"] = _float(source, "timeout_s", cfg.source_timeout_s, 1, 3600)
    mounts = raw.get("mounts", {})
    if mounts:
        changes["mount_passwords"] = {
            str(name): str(m.get("password", "")) for name, m in mounts.items()
        }
    audio = raw.get("audio", {})
    changes["opus_bitrate_bps"] = _int(audio, "opus_bitrate_bps", cfg.opus_bitrate_bps, 6000,
                                       510000)
    changes["mp3_bitrate_bps"] = _int(audio, "mp3_bitrate_bps", cfg.mp3_bitrate_bps, 8000, 320000)
    changes["jitter_target_ms"] = _int(audio, "jitter_target_ms", cfg.jitter_target_ms, 20, 5000)
    changes["jitter_max_ms"] = _int(audio, "jitter_max_ms", cfg.jitter_max_ms, 20, 10000)
    changes["source_stall_ms"] = _int(audio, "source_stall_ms", cfg.source_stall_ms, 100, 60000)
    changes["max_upload_mb"] = _int(audio, "max_upload_mb", cfg.max_upload_mb, 1, 2000)
    if "live_agc" in audio:
        changes["live_agc"] = bool(audio["live_agc"])
    if "loudness_target_lufs" in audio:
        target = audio["loudness_target_lufs"]
        if not isinstance(target, (int, float)) or not -40 <= target <= -5:
            raise ConfigError(N_("loudness_target_lufs must be from -40 to -5"))
        changes["loudness_target_lufs"] = float(target)
    fanout = raw.get("fanout", {})
    changes["burst_ms"] = _int(fanout, "burst_ms", cfg.burst_ms, 0, 10000)
    changes["backlog_ms"] = _int(fanout, "backlog_ms", cfg.backlog_ms, 100, 60000)
    changes["sndbuf_bytes"] = _int(fanout, "sndbuf_bytes", cfg.sndbuf_bytes, 0, 16 << 20)
    changes["http_batch_ms"] = _int(fanout, "http_batch_ms", cfg.http_batch_ms, 20, 1000)
    changes["http_batch_above"] = _int(fanout, "http_batch_above", cfg.http_batch_above, 0,
                                       1_000_000)
    changes["http_batch_large_ms"] = _int(fanout, "http_batch_large_ms",
                                          cfg.http_batch_large_ms, 0, 1000)
    changes["http_batch_large_above"] = _int(fanout, "http_batch_large_above",
                                             cfg.http_batch_large_above, 0, 1_000_000)
    if "zones" in raw:
        try:
            changes["zones"] = [
                Zone(str(z["id"]), str(z.get("name", z["id"])), str(z.get("parent") or "") or None,
                     str(z["admin_code"]) if z.get("admin_code") else None,
                     volume_pct=int(z.get("volume_pct", 70)),
                     alert_volume_pct=int(z.get("alert_volume_pct", 100)))
                for z in raw["zones"]
            ]
        except (KeyError, TypeError):
            raise ConfigError(N_("every [[zones]] entry needs an id")) from None
    if "tokens" in raw:
        try:
            changes["tokens"] = [
                TokenConfig(str(t["name"]), str(t["sha256"]).lower(),
                            tuple(str(r) for r in t["rights"]))
                for t in raw["tokens"]
            ]
        except (KeyError, TypeError):
            raise ConfigError(N_("every [[tokens]] entry needs a name, a sha256 and "
                                 "rights")) from None
    alerts = raw.get("alerts", {})
    if "tone_s" in alerts:
        changes["alert_tone_s"] = float(alerts["tone_s"])
    if "gap_s" in alerts:
        changes["alert_gap_s"] = float(alerts["gap_s"])
    if alerts.get("cap_test_zone"):
        changes["cap_test_zone"] = str(alerts["cap_test_zone"])
    if "endpoints" in raw:
        try:
            changes["endpoints"] = [
                EndpointInfo(str(e["id"]), str(e["zone"]), str(e.get("name", "")),
                               float(e["lat"]) if "lat" in e else None,
                               float(e["lon"]) if "lon" in e else None,
                               str(e.get("address", "")), str(e.get("admin_code", "")))
                for e in raw["endpoints"]
            ]
        except (KeyError, TypeError):
            raise ConfigError(N_("every [[endpoints]] entry needs an id and a zone")) from None
    if "mqtt" in raw:
        changes["mqtt"] = _mqtt(cfg.mqtt, raw["mqtt"])
    if "alarms" in raw:
        changes["alarms"] = _alarms(cfg.alarms, raw["alarms"])
    if "network" in raw:
        changes["fetch_policy"] = _network(raw["network"])
    if "tls" in raw:
        changes["tls"] = _tls(raw["tls"])
    if "limits" in raw:
        changes["limits"] = _limits(cfg.limits, raw["limits"])
    if "sessions" in raw:
        changes["sessions"] = _sessions(cfg.sessions, raw["sessions"])
    if "webrtc" in raw:
        changes["webrtc"] = _webrtc(cfg.webrtc, raw["webrtc"])
    new = replace(cfg, **changes)
    if new.jitter_target_ms > new.jitter_max_ms:
        raise ConfigError(N_("jitter_target_ms must not exceed jitter_max_ms"))
    if new.http_batch_large_above < new.http_batch_above:
        if "http_batch_large_above" not in fanout:  # only the first threshold raised: the
            # second keeps its place above it (twice, as the defaults are)
            return replace(new, http_batch_large_above=2 * new.http_batch_above)
        raise ConfigError(N_("[fanout] http_batch_large_above ({large_above}) must not be less "
                             "than http_batch_above ({above})"),
                          large_above=new.http_batch_large_above, above=new.http_batch_above)
    return new


def _float(section: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = section.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError(N_("{key} must be a number from {lo:g} to {hi:g}, not {value!r}"),
                          key=key, lo=lo, hi=hi, value=v)
    return float(v)


def _mqtt(cfg: MqttConfig, raw: dict[str, Any]) -> MqttConfig:
    url = str(raw.get("url", cfg.url))
    if url != "embedded" and not url.startswith(("mqtt://", "mqtts://")):
        raise ConfigError(N_('[mqtt] url must be "embedded", mqtt://… or mqtts://…, not '
                             "{url!r}"), url=url)
    host, port = cfg.listen_host, cfg.listen_port
    if "listen" in raw:
        host, port = parse_listen(str(raw["listen"]))
    root = str(raw.get("topic_root", cfg.topic_root))
    if not root or any(c in root for c in "#+/") or root.startswith("$"):
        raise ConfigError(N_("[mqtt] topic_root {root!r} must be one plain topic level"),
                          root=root)
    out = MqttConfig(
        url, host, port, root, str(raw["ca_file"]) if raw.get("ca_file") else None,
        _float(raw, "heartbeat_s", cfg.heartbeat_s, 1, 3600),
        _float(raw, "heartbeat_timeout_s", cfg.heartbeat_timeout_s, 2, 86400),
        _float(raw, "retry_s", cfg.retry_s, 0.1, 3600),
        _float(raw, "command_ttl_s", cfg.command_ttl_s, 1, 7 * 86400),
    )
    if out.heartbeat_timeout_s <= out.heartbeat_s:
        raise ConfigError(N_("[mqtt] heartbeat_timeout_s must exceed heartbeat_s"))
    return out


def _network(raw: dict[str, Any]) -> FetchPolicy:
    """The fetch policy of ``[network]``: ``fetch_allow`` and ``fetch_deny``, lists of
    networks, addresses, host names and ``*.domain``."""
    rules = []
    for key in ("fetch_allow", "fetch_deny"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(N_("[network] {key} must be a list of strings, not {value!r}"),
                              key=key, value=value)
        try:
            rules.append(tuple(FetchRule.parse(v) for v in value))
        except ValueError as exc:
            raise ConfigError(N_("[network] {key}: {error}"), key=key,
                              error=_message_of(exc)) from None
    return FetchPolicy(*rules)


def _tls(raw: dict[str, Any]) -> TlsConfig:
    cert, key = raw.get("cert_file"), raw.get("key_file")
    if key and not cert:
        raise ConfigError(N_("[tls] key_file needs a cert_file"))
    return TlsConfig(str(cert) if cert else None, str(key) if key else None,
                     bool(raw.get("allow_plain", False)))


def _addresses(raw: dict[str, Any], key: str, default: AddressSet) -> AddressSet:
    if key not in raw:
        return default
    entries = raw[key]
    if not isinstance(entries, list):
        raise ConfigError(N_("[limits] {key} must be a list of addresses or networks"), key=key)
    try:
        return AddressSet(str(e) for e in entries)
    except ValueError as exc:
        raise ConfigError(N_("[limits] {key}: {error}"), key=key,
                          error=_message_of(exc)) from None


def _limits(cfg: LimitsConfig, raw: dict[str, Any]) -> LimitsConfig:
    return LimitsConfig(
        _int(raw, "connections_per_address", cfg.connections_per_address, 0, 1_000_000),
        _addresses(raw, "exempt", cfg.exempt),
        _int(raw, "fd_reserve", cfg.fd_reserve, 0, 1_000_000),
        _addresses(raw, "trusted_proxies", cfg.trusted_proxies),
        _int(raw, "failures_free", cfg.failures_free, 0, 1000),
        _float(raw, "failure_delay_max_s", cfg.failure_delay_max_s, 0, 3600),
    )


def _sessions(cfg: SessionsConfig, raw: dict[str, Any]) -> SessionsConfig:
    return SessionsConfig(
        60.0 * _float(raw, "idle_timeout_min", cfg.idle_timeout_s / 60.0, 1, 7 * 1440),
        _int(raw, "login_failures", cfg.login_failures, 1, 1000),
        _float(raw, "login_forget_s", cfg.login_forget_s, 1, 86400),
    )


ICE_URL = re.compile(r"^(stuns?|turns?):(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?"
                     r"(\?transport=(udp|tcp))?$")


def _webrtc(cfg: WebRtcSettings, raw: dict[str, Any]) -> WebRtcSettings:
    """``[webrtc]``: ICE servers (tables of url, username, credential; TURN needs the last
    two), addresses, the public address, the UDP port range, CORS origins, the limits of
    sources (``max_sources``) and viewers (``max_viewers``; ``max_sessions``, the one limit
    of older versions, is read as the viewers' when ``max_viewers`` is not given), and how
    long a WHIP source may go without RTP before it ends (``rtp_gone_s``, 1 to 3600 s)."""
    servers = []
    entries = raw.get("ice_servers", [])
    if not isinstance(entries, list):
        raise ConfigError(N_("[webrtc] ice_servers must be a list of tables"))
    for entry in entries:
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not ICE_URL.match(url):
            raise ConfigError(N_("[webrtc] ice_servers: {value!r} needs a url stun:host[:port] "
                                 "or turn:host[:port][?transport=udp|tcp]"), value=entry)
        server = IceServer(url, str(entry.get("username", "")), str(entry.get("credential", "")))
        if server.is_turn and not (server.username and server.credential):
            raise ConfigError(N_("[webrtc] ice_servers: the TURN server {url} needs a username "
                                 "and a credential"), url=url)
        servers.append(server)
    addresses = _strings(raw, "addresses", cfg.addresses)
    for address in addresses:
        _ip(address, "addresses")
    public = raw.get("public_address", cfg.public_address)
    if public is not None:
        public = str(_ip(str(public), "public_address"))
    ports = cfg.udp_ports
    if "udp_ports" in raw:
        try:
            ports = parse_port_range(str(raw["udp_ports"]))
        except ValueError:
            raise ConfigError(N_('[webrtc] udp_ports must be a range of ports, "40000-40100", '
                                 "not {value!r}"), value=raw["udp_ports"]) from None
    return WebRtcSettings(
        ice_servers=tuple(servers) if "ice_servers" in raw else cfg.ice_servers,
        addresses=addresses, public_address=public, udp_ports=ports,
        cors_origins=_strings(raw, "cors_origins", cfg.cors_origins),
        max_sources=_int(raw, "max_sources", cfg.max_sources, 1, 10_000),
        max_viewers=_int(raw, "max_viewers" if "max_viewers" in raw else "max_sessions",
                         cfg.max_viewers, 1, 10_000),
        rtp_gone_s=_float(raw, "rtp_gone_s", cfg.rtp_gone_s, RTP_TIMEOUT_S, 3600),
        preload=bool(raw.get("preload", cfg.preload)),
    )


def _strings(raw: dict[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = raw.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(N_("[webrtc] {key} must be a list of strings, not {value!r}"),
                          key=key, value=value)
    return tuple(value)


def _ip(value: str, key: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(N_("[webrtc] {key}: {value!r} is not an IP address"), key=key,
                          value=value) from None


def _alarms(cfg: AlarmConfig, raw: dict[str, Any]) -> AlarmConfig:
    return AlarmConfig(
        _float(raw, "offline_minutes", cfg.offline_minutes, 0, 7 * 1440),
        _float(raw, "hold_s", cfg.hold_s, 0, 3600),
        _int(raw, "underruns_max", cfg.underruns_max, 0, 1_000_000),
        _float(raw, "underrun_window_s", cfg.underrun_window_s, 10, 86400),
        _float(raw, "supply_v_min", cfg.supply_v_min, 0, 400),
        _float(raw, "supply_v_max", cfg.supply_v_max, 0, 400),
        _float(raw, "loop_lag_ms", cfg.loop_lag_ms, 1, 60_000),
    )


def _apply_env(cfg: Config, env: dict[str, str]) -> Config:
    changes: dict[str, Any] = {}
    if env.get("LOA_LISTEN"):
        changes["listen_host"], changes["listen_port"] = parse_listen(env["LOA_LISTEN"])
    if env.get("LOA_DATA_DIR"):
        changes["data_dir"] = Path(env["LOA_DATA_DIR"])
    if env.get("LOA_SOURCE_PASSWORD"):
        changes["source_password"] = env["LOA_SOURCE_PASSWORD"]
    if env.get("LOA_ADMIN_TOKEN"):
        changes["admin_token"] = env["LOA_ADMIN_TOKEN"]
    if env.get("LOA_ADMIN_PASSWORD"):
        password = env["LOA_ADMIN_PASSWORD"]
        if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
            raise ConfigError(N_("LOA_ADMIN_PASSWORD must have {min_chars} to {max_chars} "
                                 "characters"), min_chars=MIN_PASSWORD_CHARS,
                              max_chars=MAX_PASSWORD_CHARS)
        changes["admin_password"] = password
    mqtt_env = {key: env[name] for key, name in (("url", "LOA_MQTT_URL"),
                                                  ("listen", "LOA_MQTT_LISTEN")) if env.get(name)}
    if mqtt_env:
        changes["mqtt"] = _mqtt(cfg.mqtt, mqtt_env)
    if env.get("LOA_DEMO"):
        changes["demo"] = env["LOA_DEMO"].strip().lower() not in ("0", "false", "no", "off")
    return replace(cfg, **changes)
