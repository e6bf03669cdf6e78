"""The ``loa`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

from loa import __version__
from loa.config import Config, ConfigError, load_config, parse_listen

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

    listen = sub.add_parser("listen", help="a simulated endpoint: pull a stream and report")
    listen.add_argument("url", help="ws://…/endpoints/<id>/ws, ws://…/zones/<zone>/ws or "
                                    "http://…/stream.ogg")
    listen.add_argument("--seconds", type=float, default=10.0)
    listen.add_argument("--endpoints", type=int, default=1, help="how many to run at once")
    listen.add_argument("--json", action="store_true", help="print the report as JSON")

    args = parser.parse_args(argv)
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
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_run_server(cfg))
    except OSError as exc:
        print(f"loa: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _run_server(cfg: Config) -> None:
    from loa.server.app import LoaServer

    server = LoaServer(cfg)
    await server.start()
    host = f"[{server.host}]" if ":" in server.host else server.host
    base = f"http://{host}:{server.port}"
    first_zone = next(iter(server.zones)).id
    lines = [
        f"Loa {__version__} đang chạy / running at {base}/",
        f"  Nghe thử / listen:        {base}/zones/{first_zone}/stream.ogg   (ffplay, VLC, mpv)",
        f"  Giao thức loa / native:   ws://{host}:{server.port}/endpoints/<id>/ws",
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
