"""Where the server of this folder listens, so that the client commands find it without
``--url``: a running ``loa serve`` holds ``<data dir>/loa.lock`` (``loa.control.datalock``)
and writes into it its pid and, once listening, its URL.

A lock file left by a server that stopped or died names a pid that no longer runs: it is
ignored. The file holds no secret (tokens are never written in clear to disk). It is only read
here, never locked: a client must not stand in the way of a server starting.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from loa.control.datalock import DataLock

DEFAULT_DATA_DIR = "loa-data"  # loa serve's default, relative to its working directory
# A server listening on every address is reached, from this machine, on loopback.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def data_dir_from_env(environ: dict[str, str]) -> Path:
    """The data folder the local server uses unless its config file names another:
    ``LOA_DATA_DIR``, else ``./loa-data`` (as ``loa serve`` picks it)."""
    return Path(environ.get("LOA_DATA_DIR") or DEFAULT_DATA_DIR)


def lock_path(data_dir: Path) -> Path:
    """The file that names the server of ``data_dir``."""
    return DataLock(Path(data_dir)).path


def find(data_dir: Path) -> str | None:
    """The URL of the server running on ``data_dir`` (a wildcard listen address as loopback),
    or None when there is no lock file, it names no URL yet, or its process is gone."""
    holder = DataLock(Path(data_dir)).holder()
    pid, url = holder.get("pid"), holder.get("url")
    if not isinstance(pid, int) or not isinstance(url, str) or not url or not _running(pid):
        return None
    return reachable(url)


def reachable(url: str) -> str:
    """``url`` with a wildcard host (``0.0.0.0``, ``[::]``) replaced by loopback."""
    split = urlsplit(url)
    host = split.hostname or ""
    if host not in WILDCARDS:
        return url
    local = WILDCARDS[host]
    netloc = f"[{local}]" if ":" in local else local
    if split.port:
        netloc += f":{split.port}"
    return urlunsplit(split._replace(netloc=netloc))


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
