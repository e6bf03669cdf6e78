"""What the commands that talk to a running server share: ``--url`` and ``--token`` on their
parser, and one API call that prints the answer and gives the exit status.

Used by ``alert``, ``media``, ``schedule``, ``endpoints``, ``command`` and ``report``. aiohttp is
imported only when a call is made, so that ``loa --help`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable


def add_client_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                      help_text: str, token_help: str) -> argparse.ArgumentParser:
    """Add the command ``name`` to ``sub`` with ``--url`` (default ``http://127.0.0.1:8080``)
    and ``--token`` (``token_help`` says which right it needs); returns its parser."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", help=f"{token_help}")
    return parser


def call_api(args: argparse.Namespace, method: str, path: str, body: object = None,
             files: dict[str, str] | None = None, fields: dict[str, str] | None = None,
             raw: bytes | None = None, accept: str | None = None,
             out: Callable[[object], str] | None = None) -> int:
    """One API call for a CLI command; returns the exit status.

    ``args`` carries ``url``, ``token`` (else ``LOA_TOKEN``) and ``command`` (for messages).
    The request carries one of: ``raw`` bytes; ``files`` (form field → local path) with
    ``fields``, as multipart; or ``body`` as JSON. ``accept`` sets the Accept header. Prints the
    answer: text as it came, JSON indented, or ``out(json)`` on success.

    Exit status: 0 on a status below 400; 1 on an error status or when the server cannot be
    reached; 2 without a token.
    """
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
