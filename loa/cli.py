"""The ``loa`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from loa import __version__
from loa.config import Config, ConfigError, load_config, parse_listen
from loa.monitoring.loop_watchdog import install_from_env

log = logging.getLogger("loa")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loa", description="Loa: IP loudspeaker broadcast server")
    parser.add_argument("--version", action="version", version=f"loa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (embedded defaults, no setup needed)")
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8080, or LOA_LISTEN)")
    serve.add_argument("--config", help="TOML config file")
    serve.add_argument("--data-dir", help="data folder (default ./loa-data, or LOA_DATA_DIR)")
    serve.add_argument("--no-demo", action="store_true", help="no demo chime on the zones")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    listen = sub.add_parser(
        "listen", help="a simulated endpoint: pull a stream and report",
        epilog="It also holds the audio timeline against the wall clock: stalls (audio more "
               "than 100 ms behind real time), the longest silence and the share of real time "
               "delivered. Exit status: 0 all heard in time; 1 an endpoint could not connect or "
               "was cut off; 3 it heard a stall or got less than 99 % of real time.")
    listen.add_argument("url", help="ws://…/endpoints/<id>/ws, ws://…/zones/<zone>/ws, "
                                    "http://…/stream.ogg or http://…/stream.mp3")
    listen.add_argument("--seconds", type=float, default=10.0)
    listen.add_argument("--endpoints", type=int, default=1, help="how many to run at once")
    listen.add_argument("--json", action="store_true", help="print the report as JSON")

    lt = sub.add_parser("loadtest", help="a fleet of simulated endpoints, with faults, measured")
    lt.add_argument("--url", help="server to test (default: start one on loopback)")
    lt.add_argument("--token", default="loadtest", help="admin token of that server")
    lt.add_argument("--source-password", default="loadtest")
    lt.add_argument("--server-pid", type=int, help="pid of a --url server, for CPU and RSS")
    lt.add_argument("--endpoints", type=int, default=1000)
    lt.add_argument("--protocol", choices=["ws", "ogg", "mp3"], default="ws")
    lt.add_argument("--procs", type=int, help="worker processes (default: one per core)")
    lt.add_argument("--ramp", type=float, default=5.0, help="seconds to connect them all")
    lt.add_argument("--seconds", type=float, default=30.0, help="length of the run")
    lt.add_argument("--zones", help="comma-separated zones (default: every leaf zone)")
    lt.add_argument("--takeover-at", type=float, help="s: take the root zone live (then release)")
    lt.add_argument("--takeover-hold", type=float, default=5.0)
    lt.add_argument("--cut-source-at", type=float, help="s: kill the live source")
    lt.add_argument("--alert-at", type=float, help="s: an emergency alert on every zone")
    lt.add_argument("--villages", type=int, default=0,
                    help="our own server gets a district of this many village zones")
    lt.add_argument("--storm-at", type=float, help="s: drop a fraction; all reconnect at once")
    lt.add_argument("--storm-fraction", type=float, default=0.3)
    lt.add_argument("--slow-at", type=float, help="s: a fraction of endpoints stop reading")
    lt.add_argument("--slow-fraction", type=float, default=0.05)
    lt.add_argument("--slow-seconds", type=float, default=10.0)
    lt.add_argument("--mqtt", action="store_true",
                    help="the MQTT control plane instead of the media path: endpoints online "
                         "over MQTT, idle CPU, zone-wide volume acknowledgements")
    lt.add_argument("--broker", choices=["embedded", "mosquitto"], default="embedded",
                    help="with --mqtt: the server's embedded broker or a private Mosquitto")
    lt.add_argument("--idle", type=float, default=20.0, help="with --mqtt: idle seconds measured")
    lt.add_argument("--rounds", type=int, default=5, help="with --mqtt: volume commands sent")
    lt.add_argument("--json", dest="json_path", help="write the report as JSON here")
    lt.add_argument("--html", dest="html_path", help="write a self-contained HTML report here")

    alert = _client(sub, "alert", "trigger, list or cancel an alert on a running server",
                    "a token with the alert right")
    where = alert.add_mutually_exclusive_group()
    where.add_argument("--zones", help="comma-separated zone ids")
    where.add_argument("--all", action="store_true", help="every zone")
    what = alert.add_mutually_exclusive_group()
    what.add_argument("--text", help="text read aloud (Vietnamese)")
    what.add_argument("--file", help="an audio file to upload (or, if it is not a local file, "
                                     "a path in the server's media folder)")
    what.add_argument("--mount", help="a live mount, after the attention tone")
    alert.add_argument("--voice", default="vi", help="vi, vi-vn-x-central or vi-vn-x-south")
    alert.add_argument("--class", dest="cls", default="emergency",
                       choices=["normal", "priority", "emergency"])
    alert.add_argument("--repeat", type=int, default=1)
    alert.add_argument("--no-tone", action="store_true", help="no attention tone")
    alert.add_argument("--expires-in", type=float, help="seconds until it expires")
    alert.add_argument("--list", action="store_true", help="list alerts instead")
    alert.add_argument("--cancel", metavar="ID", help="cancel an alert instead")

    media = _client(sub, "media", "the media library of a running server",
                    "an operator token")
    msub = media.add_subparsers(dest="media_command", required=True)
    madd = msub.add_parser("add", help="upload an audio file")
    madd.add_argument("file")
    madd.add_argument("--title", default="")
    madd.add_argument("--tags", default="", help="comma-separated")
    msub.add_parser("list", help="list the library")
    mrm = msub.add_parser("rm", help="delete an item (refused while it plays)")
    mrm.add_argument("id")

    sched = _client(sub, "schedule", "the schedule of a running server",
                    "an operator token")
    ssub = sched.add_subparsers(dest="schedule_command", required=True)
    sadd = ssub.add_parser("add", help="add an item")
    sadd.add_argument("--title", default="")
    sadd.add_argument("--zones", required=True, help="comma-separated zone ids")
    sadd.add_argument("--start", required=True, help="local time, e.g. 2026-12-01T06:00")
    sadd.add_argument("--duration", type=float, required=True, help="window, seconds")
    sadd.add_argument("--rrule", help='RFC 5545, e.g. "FREQ=DAILY" or '
                                      '"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"')
    sadd.add_argument("--class", dest="cls", default="normal", choices=["normal", "priority"])
    group = sadd.add_mutually_exclusive_group(required=True)
    group.add_argument("--media", help="a media library id")
    group.add_argument("--text", help="text read aloud")
    group.add_argument("--relay", help="a station's stream URL (tiếp sóng)")
    sadd.add_argument("--missed", default="skip", choices=["skip", "late"])
    sadd.add_argument("--late-minutes", type=int, default=0)
    ssub.add_parser("list", help="list the items and their next slots")
    srm = ssub.add_parser("rm", help="delete an item")
    srm.add_argument("id")

    eps = _client(sub, "endpoints", "the endpoint registry (cụm loa) of a running server",
                  "an admin token")
    esub = eps.add_subparsers(dest="endpoints_command", required=True)
    eadd = esub.add_parser("add", help="register an endpoint; prints its MQTT password once")
    eadd.add_argument("id")
    eadd.add_argument("--zone", required=True)
    eadd.add_argument("--name", default="")
    eadd.add_argument("--lat", type=float)
    eadd.add_argument("--lon", type=float)
    eadd.add_argument("--address", default="")
    eadd.add_argument("--admin-code", default="", help="administrative-unit code")
    elist = esub.add_parser("list", help="list endpoints with their presence")
    elist.add_argument("--zone", help="only this zone and below")
    elist.add_argument("--offline", action="store_true", help="only those offline")
    erm = esub.add_parser("rm", help="remove an endpoint (its credentials stop working)")
    erm.add_argument("id")
    eimp = esub.add_parser("import", help="bulk import from CSV: id,name,zone,lat,lon,"
                                          "address,admin_code; prints new passwords as CSV")
    eimp.add_argument("file")
    epw = esub.add_parser("passwd", help="a new MQTT password for an endpoint")
    epw.add_argument("id")
    emq = esub.add_parser("mosquitto", help="write a Mosquitto password file and ACL file")
    emq.add_argument("--dir", default=".", help="where to write loa.passwd and loa.acl")

    cmd = _client(sub, "command", "a command to the endpoints of a zone, or to one",
                  "an operator token")
    target = cmd.add_mutually_exclusive_group(required=True)
    target.add_argument("--zone")
    target.add_argument("--endpoint")
    cmd.add_argument("op", choices=["volume", "mute", "unmute", "power", "reboot", "play",
                                    "stop", "move"])
    cmd.add_argument("value", nargs="?", help="volume 0-100, power on|off, move ZONE")

    rep = _client(sub, "report", "the report (báo cáo) of a commune for a period",
                  "a token")
    rep.add_argument("commune", help="a commune's zone id")
    period = rep.add_mutually_exclusive_group(required=True)
    period.add_argument("--year", type=int, help="the calendar year (the yearly report)")
    period.add_argument("--from", dest="start", help="local date/time or unix time")
    rep.add_argument("--to", dest="end", help="with --from")
    rep.add_argument("--csv", action="store_true", help="CSV instead of JSON")

    bench = sub.add_parser("bench", help="Loa beside Icecast 2 and the ffmpeg CLI, in one run")
    bench.add_argument("--listeners", default="100,500,1000",
                       help="listener counts for the fan-out comparison")
    bench.add_argument("--seconds", type=float, default=20.0, help="length of each fan-out run")
    bench.add_argument("--procs", type=int, default=2, help="listener worker processes")
    bench.add_argument("--no-icecast", action="store_true", help="measure Loa alone")
    bench.add_argument("--json", dest="json_path", help="write the results as JSON here")
    bench.add_argument("--only", help="only these parts, comma-separated: fanout, transcode, "
                       "switching, alerts (alerts: file, text and CAP alerts on some zones "
                       "while the others listen, at the largest --listeners count)")

    args = parser.parse_args(argv)
    if args.command == "alert":
        return _alert(args)
    if args.command == "media":
        return _media(args)
    if args.command == "endpoints":
        return _endpoints(args)
    if args.command == "command":
        return _command(args)
    if args.command == "report":
        return _report(args)
    if args.command == "schedule":
        return _schedule(args)
    if args.command == "bench":
        from loa.loadtest.bench import BENCH_PARTS, bench_main

        counts = [int(x) for x in args.listeners.split(",") if x.strip()]
        only = {x.strip() for x in (args.only or "").split(",") if x.strip()}
        if only - set(BENCH_PARTS):
            parser.error(f"--only: unknown part(s) {', '.join(sorted(only - set(BENCH_PARTS)))};"
                         f" choose from {', '.join(BENCH_PARTS)}")
        return bench_main(counts, args.seconds, args.procs, args.no_icecast, args.json_path,
                          only or None)
    if args.command == "loadtest" and args.mqtt:
        from loa.loadtest.mqtt_fleet import MqttLoadSpec, mqtt_loadtest_main

        return mqtt_loadtest_main(MqttLoadSpec(
            endpoints=args.endpoints, procs=args.procs or 2, villages=args.villages or 20,
            broker=args.broker, ramp_s=args.ramp, idle_s=args.idle, rounds=args.rounds,
            json_path=args.json_path))
    if args.command == "loadtest":
        from loa.loadtest.runner import LoadSpec, loadtest_main

        spec = LoadSpec(
            url=args.url, token=args.token, source_password=args.source_password,
            server_pid=args.server_pid, endpoints=args.endpoints, protocol=args.protocol,
            ramp_s=args.ramp, seconds=args.seconds,
            zones=args.zones.split(",") if args.zones else None,
            takeover_at=args.takeover_at, takeover_hold_s=args.takeover_hold,
            cut_source_at=args.cut_source_at, alert_at=args.alert_at,
            village_zones=args.villages, storm_at=args.storm_at,
            storm_fraction=args.storm_fraction, slow_at=args.slow_at,
            slow_fraction=args.slow_fraction, slow_seconds=args.slow_seconds,
            json_path=args.json_path, html_path=args.html_path,
        )
        if args.procs:
            spec.procs = args.procs
        return loadtest_main(spec)
    if args.command == "serve":
        return _serve(args)
    if args.command == "listen":
        from loa.loadtest.endpoint import listen_main

        return listen_main(args.url, args.seconds, args.endpoints, args.json)
    return 2


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = load_config(args.config)
        if args.listen:
            host, port = parse_listen(args.listen)
            cfg = replace(cfg, listen_host=host, listen_port=port)
        if args.data_dir:
            cfg = replace(cfg, data_dir=Path(args.data_dir))
        if args.no_demo:
            cfg = replace(cfg, demo=False)
    except ConfigError as exc:
        print(f"loa: {exc}", file=sys.stderr)
        return 2
    try:
        watched = install_from_env(dict(os.environ)) is not None
    except ValueError as exc:
        print(f"loa: {exc}", file=sys.stderr)
        return 2
    try:
        if not watched:  # the watchdog hooks the standard loop's handles, not uvloop's
            import uvloop

            uvloop.install()
    except ImportError:
        pass
    try:
        import loa.app  # noqa: F401  # the heavy imports, before the loop starts

        asyncio.run(_run_server(cfg))
    except OSError as exc:
        print(f"loa: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _run_server(cfg: Config) -> None:
    from loa.app import LoaServer  # imported before the loop runs (see _serve)

    server = await asyncio.to_thread(LoaServer, cfg)  # opens the database: beside the loop
    await server.start()
    host = f"[{server.host}]" if ":" in server.host else server.host
    base = f"http://{host}:{server.port}"
    first_zone = next(iter(server.zones)).id
    lines = [
        f"Loa {__version__} đang chạy / running at {base}/",
        f"  Nghe thử / listen:        {base}/zones/{first_zone}/stream.ogg   (ffplay, VLC, mpv)",
        f"  Giao thức loa / native:   ws://{host}:{server.port}/endpoints/<id>/ws",
        f"  Điều khiển / MQTT:        {server.fleet.broker_url}  "
        f"(topics {server.fleet.topics.base}/ep/<id>/…)",
        "  Phát trực tiếp / go live: ffmpeg -re -i show.mp3 -c:a libmp3lame -f mp3 "
        f"-content_type audio/mpeg icecast://source:PASSWORD@{host}:{server.port}/live/studio",
    ]
    if server.source_password_generated:
        lines.append(f"  Mật khẩu nguồn / source password (shown once, kept in "
                     f"{cfg.data_dir}/source_password): {server.source_password}")
    else:
        lines.append("  Mật khẩu nguồn / source password: from config, LOA_SOURCE_PASSWORD or "
                     f"{cfg.data_dir}/source_password")
    if server.new_admin_token:
        lines.append(f"  Admin token (shown once, only its hash is kept): "
                     f"{server.new_admin_token}")
    print("\n".join(lines), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:
            pass
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()


def _client(sub: Any, name: str, help_text: str, token_help: str) -> argparse.ArgumentParser:
    """A command that talks to a running server's API: --url and --token."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", help=f"{token_help}")
    return parser


def _api(args: argparse.Namespace, method: str, path: str, body: object = None,
         files: dict[str, str] | None = None, fields: dict[str, str] | None = None,
         raw: bytes | None = None, accept: str | None = None,
         out: Callable[[object], str] | None = None) -> int:
    """One API call for a CLI command: prints the answer (JSON, or text when the server
    answers text, or ``out(json)``), exit 0 on success."""
    import json
    import os

    import aiohttp

    token = args.token or os.environ.get("LOA_TOKEN")
    if not token:
        print(f"loa {args.command}: needs --token (or LOA_TOKEN)", file=sys.stderr)
        return 2
    url = args.url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {token}"}
    if accept:
        headers["Accept"] = accept

    async def go() -> tuple[int, object]:
        async with aiohttp.ClientSession() as http:
            if raw is not None:
                async with http.request(method, url, data=raw, headers=headers) as resp:
                    if resp.content_type == "application/json":
                        return resp.status, await resp.json()
                    return resp.status, await resp.text()
            if method == "GET" and accept:
                async with http.request(method, url, headers=headers) as resp:
                    if resp.content_type == "application/json":
                        return resp.status, await resp.json()
                    return resp.status, await resp.text()
            if files:
                form = aiohttp.FormData()
                for name, value in (fields or {}).items():
                    form.add_field(name, value)
                for name, file_path in files.items():
                    handle = await asyncio.to_thread(open, file_path, "rb")
                    form.add_field(name, handle, filename=os.path.basename(file_path))
                async with http.request(method, url, data=form, headers=headers) as resp:
                    return resp.status, await resp.json()
            async with http.request(method, url, json=body, headers=headers) as resp:
                return resp.status, await resp.json()

    try:
        status, data = asyncio.run(go())
    except (aiohttp.ClientError, OSError) as exc:
        print(f"loa {args.command}: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if isinstance(data, str):
        print(data, end="")
    elif out is not None and status < 400:
        print(out(data), end="")
    else:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    return 0 if status < 400 else 1


def _endpoints(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    c = args.endpoints_command
    if c == "add":
        body = {"id": args.id, "zone": args.zone, "name": args.name, "lat": args.lat,
                "lon": args.lon, "address": args.address, "admin_code": args.admin_code}
        return _api(args, "POST", "/api/v1/endpoints", body)
    if c == "list":
        query = "&".join(q for q in (f"zone={quote(args.zone)}" if args.zone else "",
                                     "online=false" if args.offline else "") if q)
        return _api(args, "GET", "/api/v1/endpoints" + (f"?{query}" if query else ""))
    if c == "rm":
        return _api(args, "DELETE", f"/api/v1/endpoints/{quote(args.id)}")
    if c == "import":
        try:
            data = open(args.file, "rb").read()
        except OSError as exc:
            print(f"loa endpoints import: {exc}", file=sys.stderr)
            return 2
        return _api(args, "POST", "/api/v1/endpoints.csv", raw=data, accept="text/csv")
    if c == "passwd":
        return _api(args, "POST", f"/api/v1/endpoints/{quote(args.id)}/credentials")
    # mosquitto: two files beside each other
    import os

    def write(files: object) -> str:
        assert isinstance(files, dict)
        os.makedirs(args.dir, exist_ok=True)
        pw, acl = os.path.join(args.dir, "loa.passwd"), os.path.join(args.dir, "loa.acl")
        with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(files["password_file"])
        with open(acl, "w") as f:
            f.write(files["acl_file"])
        return (f"wrote {pw} and {acl}; add the server's own user with\n"
                f"  mosquitto_passwd {pw} loa-server\n"
                f"and in mosquitto.conf: password_file {pw} / acl_file {acl} / "
                "allow_anonymous false\n")

    return _api(args, "GET", "/api/v1/mqtt/mosquitto", out=write)


def _command(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    body: dict[str, object] = {"op": args.op}
    try:
        if args.op == "volume":
            body["volume_pct"] = None if args.value in (None, "zone") else int(args.value)
        elif args.op == "power":
            if args.value not in ("on", "off"):
                raise ValueError("power needs on or off")
            body["on"] = args.value == "on"
        elif args.op == "move":
            if not args.value:
                raise ValueError("move needs a zone")
            body["zone"] = args.value
    except ValueError as exc:
        print(f"loa command: {exc}", file=sys.stderr)
        return 2
    path = (f"/api/v1/zones/{quote(args.zone)}/commands" if args.zone
            else f"/api/v1/endpoints/{quote(args.endpoint)}/commands")
    return _api(args, "POST", path, body)


def _report(args: argparse.Namespace) -> int:
    from urllib.parse import quote, urlencode

    if args.year:
        query = {"year": str(args.year)}
    else:
        if not args.end:
            print("loa report: --from needs --to", file=sys.stderr)
            return 2
        query = {"from": args.start, "to": args.end}
    if args.csv:
        query["format"] = "csv"
    return _api(args, "GET", f"/api/v1/reports/{quote(args.commune)}?{urlencode(query)}",
                accept="text/csv" if args.csv else "application/json")


def _media(args: argparse.Namespace) -> int:
    if args.media_command == "add":
        return _api(args, "POST", "/api/v1/media", files={"file": args.file},
                    fields={"title": args.title, "tags": args.tags})
    if args.media_command == "list":
        return _api(args, "GET", "/api/v1/media")
    return _api(args, "DELETE", f"/api/v1/media/{args.id}")


def _schedule(args: argparse.Namespace) -> int:
    if args.schedule_command == "list":
        return _api(args, "GET", "/api/v1/schedules")
    if args.schedule_command == "rm":
        return _api(args, "DELETE", f"/api/v1/schedules/{args.id}")
    if args.media:
        content: dict[str, str] = {"kind": "media", "id": args.media}
    elif args.text:
        content = {"kind": "text", "text": args.text}
    else:
        content = {"kind": "relay", "url": args.relay}
    return _api(args, "POST", "/api/v1/schedules", {
        "title": args.title, "zones": args.zones.split(","), "start": args.start,
        "duration_s": args.duration, "rrule": args.rrule, "class": args.cls,
        "content": content, "missed": args.missed, "late_minutes": args.late_minutes})


def _alert(args: argparse.Namespace) -> int:
    """``loa alert``: the API's alert calls from a shell, for the official on duty."""
    import json
    import os

    if args.list:
        return _api(args, "GET", "/api/v1/alerts")
    if args.cancel:
        return _api(args, "DELETE", f"/api/v1/alerts/{args.cancel}")
    if not args.zones and not args.all:
        print("loa alert: say where: --zones Z1,Z2 or --all", file=sys.stderr)
        return 2
    if args.text:
        content: dict[str, str] = {"kind": "text", "text": args.text, "voice": args.voice}
    elif args.file and os.path.isfile(args.file):
        content = {"kind": "upload"}
    elif args.file:
        content = {"kind": "media", "path": args.file}
    elif args.mount:
        content = {"kind": "mount", "mount": args.mount}
    else:
        content = {"kind": "tone"}
    body: dict[str, object] = {
        "class": args.cls, "zones": args.zones.split(",") if args.zones else [],
        "all": args.all, "content": content, "repeat": args.repeat, "tone": not args.no_tone}
    if args.expires_in:
        body["expires_in_s"] = args.expires_in
    if content["kind"] == "upload":
        return _api(args, "POST", "/api/v1/alerts", files={"audio": args.file},
                    fields={"spec": json.dumps(body)})
    return _api(args, "POST", "/api/v1/alerts", body)
