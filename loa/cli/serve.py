"""``loa serve``: run the whole server on this machine, with embedded defaults when nothing is
configured, until SIGINT or SIGTERM; print once where to listen, push and control."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from loa import __version__
from loa.cli.text import _, language
from loa.core.i18n import say

if TYPE_CHECKING:
    from loa.config import Config

log = logging.getLogger("loa")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the subcommands ``sub``."""
    text = _("run the server (embedded defaults, no setup needed)")
    serve = sub.add_parser("serve", help=text, description=text)
    serve.add_argument("--listen", help=_("HOST:PORT (default 127.0.0.1:8080, or LOA_LISTEN)"))
    serve.add_argument("--config", help=_("TOML config file"))
    serve.add_argument("--data-dir", help=_("data folder (default ./loa-data, or LOA_DATA_DIR)"))
    serve.add_argument("--no-demo", action="store_true", help=_("no demo chime on the zones"))
    serve.add_argument("-v", "--verbose", action="store_true", help=_("debug logging"))
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. Exit status: 0 after a clean stop; 1 when the server cannot
    start (a port taken, a folder not writable); 2 on a configuration error."""
    # imported here: the configuration pulls in the codecs, which the client commands, whose
    # parsers are built beside this one, never need
    from loa.config import ConfigError, load_config, parse_listen
    from loa.core.logs import configure as configure_logging
    from loa.monitoring.loop_watchdog import install_from_env

    limit_malloc_arenas()  # before any thread of the server starts
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    # A file-size limit (ulimit -f, systemd LimitFSIZE) fails the write that crosses it
    # (EFBIG: handled as a full disk) instead of killing the station with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        cfg = load_config(args.config)
        if args.listen:
            host, port = parse_listen(args.listen)
            cfg = replace(cfg, listen_host=host, listen_port=port)
        if args.data_dir:
            cfg = replace(cfg, data_dir=Path(args.data_dir))
        if args.no_demo:
            cfg = replace(cfg, demo=False)
    except ConfigError as exc:  # said in the language of the command line
        print(f"loa: {say(exc, language())}", file=sys.stderr)
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
        from loa.codecs.loudness import MEASURER

        try:
            asyncio.run(_run_server(cfg))
        finally:  # the process's loudness worker, if one is running: ended, not left to exit
            MEASURER.shutdown()
    except OSError as exc:  # a port taken, the data folder in use: said in the user's words
        print(f"loa: {say(exc, language())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


# glibc's mallopt parameter for the most malloc arenas (malloc.h); its default is 8 per core.
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas (``mallopt(M_ARENA_MAX)``) instead of
    one per thread that allocates, up to 8 per core. Call it before the server's threads start
    (the decoders, the store, the file readers): an arena once made is never given back.
    Returns whether the C library took it (False off glibc, e.g. musl, which has no
    ``gnu_get_libc_version`` nor ``M_ARENA_MAX``: nothing changes there).

    Measured on the bench's idle live server (``loa bench``'s Loa carrying one Ogg/Opus
    programme, no listener, 8 threads; issue 17): 0.5-0.7 MB less resident memory with 2
    arenas (85.4 -> 84.9 MB, medians of 3 interleaved runs each), 1.3 MB with 1; 2 leaves the
    decoder threads an arena beside the loop's. A ``malloc_trim(0)`` once started gave back
    0.8 MB with the default arenas and next to nothing with 2: the free memory it returns is
    the extra arenas'."""
    import ctypes  # here: the client commands, whose parsers sit beside this one, never need it

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  # AttributeError when not glibc
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


async def _run_server(cfg: Config) -> None:
    from loa.app import LoaServer  # imported before the loop runs (see run)

    server = await asyncio.to_thread(LoaServer, cfg)  # opens the database: beside the loop
    await server.start()
    host = f"[{server.host}]" if ":" in server.host else server.host
    base = server.url  # https:// when the port speaks TLS
    tls = cfg.tls.enabled
    first_zone = next(iter(server.zones)).id
    lines = [
        f"Loa {__version__} đang chạy / running at {base}/",
        f"  Bảng điều khiển / console: {base}/   (đăng nhập / sign in: admin)",
        f"  Nghe thử / listen:        {base}/zones/{first_zone}/stream.ogg   (ffplay, VLC, mpv)",
        f"  Giao thức loa / native:   {'wss' if tls else 'ws'}://{host}:{server.port}"
        "/endpoints/<id>/ws",
        f"  Điều khiển / MQTT:        {server.fleet.broker_url}  "
        f"(topics {server.fleet.topics.base}/ep/<id>/…)",
        "  Phát trực tiếp / go live: ffmpeg -re -i show.mp3 -c:a libmp3lame -f mp3 "
        f"{'-tls 1 ' if tls else ''}-content_type audio/mpeg "
        f"icecast://source:PASSWORD@{host}:{server.port}/live/studio",
    ]
    folder = server.data_lock.path.parent  # absolute: the folder a person looks in
    # each line "tiếng Việt / English": one banner read by both
    if server.source_password_generated:
        lines.append("  Mật khẩu nguồn / source password (chỉ hiện lần này, lưu ở / shown once, "
                     f"kept in {folder}/source_password): {server.source_password}")
    else:
        lines.append("  Mật khẩu nguồn / source password: trong cấu hình, LOA_SOURCE_PASSWORD "
                     f"hoặc / from config, LOA_SOURCE_PASSWORD or {folder}/source_password")
    if server.new_admin_token:
        lines.append("  Mã quản trị / admin token (chỉ hiện lần này, chỉ lưu mã băm / shown "
                     f"once, only its hash is kept): {server.new_admin_token}")
        lines.append(f"  Lệnh loa / loa commands:  export LOA_TOKEN={server.new_admin_token}"
                     f"   (và/and LOA_URL={base} từ thư mục khác/from another folder)")
    if server.new_admin_password:
        lines.append("  Tài khoản / account (chỉ hiện lần này, chỉ lưu mã băm / shown once, "
                     f"only its hash is kept): admin  mật khẩu/password "
                     f"{server.new_admin_password}   (đổi/change: loa users passwd admin)")
    # the signals are ours before the banner says the server runs: whoever reads it and
    # stops the server at once gets an orderly stop, not the default handler's death
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:
            pass
    print("\n".join(lines), flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()
