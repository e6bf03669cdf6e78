"""A small HTTP server on loopback standing for another station or a CAP resource host."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def http_upstream(path: str, handler: Handler) -> tuple[web.AppRunner, int]:
    """Serve ``handler`` at ``path`` on 127.0.0.1 and a free port: (runner to clean up, port)."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]  # the port the OS chose for port 0
