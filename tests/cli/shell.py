"""Running the ``loa`` command line as a person does: a real process, its own working folder
and environment, its exit status, stdout and stderr; waited for beside the test's event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loa.app import LoaServer
from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
# what would change the command's behaviour if the test machine's environment set it
CLEARED = ("LOA_URL", "LOA_TOKEN", "LOA_DATA_DIR", "LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES")


@dataclass(frozen=True)
class Ran:
    """A finished command: exit ``code``, ``out`` and ``err`` as text."""

    code: int
    out: str
    err: str


def environment(**values: str) -> dict[str, str]:
    """This process's environment without ``CLEARED``, plus ``values``; ``PYTHONPATH`` names
    the checkout, so ``python -m loa`` runs the code under test from any folder."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(values)
    return env


def server_env(server: LoaServer, **values: str) -> dict[str, str]:
    """``environment`` with ``LOA_URL`` and ``LOA_TOKEN`` for ``server``."""
    return environment(LOA_URL=f"http://127.0.0.1:{server.port}", LOA_TOKEN=ADMIN_TOKEN,
                       **values)


async def loa(*args: str, env: dict[str, str], cwd: Path | None = None,
              timeout_s: float = 60.0) -> Ran:
    """``python -m loa ARGS`` in ``cwd`` with ``env``, started and waited for beside the loop."""
    return await shell([sys.executable, "-m", "loa", *args], env=env, cwd=cwd,
                       timeout_s=timeout_s)


async def shell(argv: list[str], *, env: dict[str, str], cwd: Path | None = None,
                timeout_s: float = 60.0) -> Ran:
    """Any command, as ``loa`` runs one."""
    proc = await asyncio.to_thread(subprocess.run, argv, env=env, cwd=cwd, capture_output=True,
                                   timeout=timeout_s, check=False)
    return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
