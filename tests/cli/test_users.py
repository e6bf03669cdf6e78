"""``loa users``, as a person runs it against a real server: make an account (the password
from the standard input), list them, change a password, make, list and revoke a personal
token, remove the account; in English and in Vietnamese."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from loa.app import LoaServer
from tests.api.accounts import log_in
from tests.cli.shell import Ran, server_env
from tests.server.test_api import call


async def users(server: LoaServer, *args: str, stdin: str = "", lang: str = "en_US.UTF-8"
                ) -> Ran:
    """``loa users ARGS`` with ``stdin`` as its standard input (not a terminal)."""
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "loa", "users", *args],
        env=server_env(server, LANG=lang), input=stdin.encode(), capture_output=True,
        timeout=60, check=False)
    return Ran(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


async def test_the_users_command(server: LoaServer) -> None:
    ran = await users(server, "add", "op-an-binh", "--role", "operator,alert", "--scope",
                      "an-binh", "--name", "Nguyễn Văn An", stdin="mat-khau-dau-tien\n")
    assert ran.code == 0, ran.err
    assert ran.out == ("Account op-an-binh made: operator, alert, scope an-binh "
                       "(Xã An Bình).\n")
    assert (await log_in(server, "op-an-binh", "mat-khau-dau-tien"))[0] == 200
    ran = await users(server, "list")
    lines = ran.out.splitlines()
    assert lines[0].split() == ["USER", "NAME", "ROLES", "SCOPE", "CREATED"]
    row = next(line for line in lines if line.startswith("op-an-binh"))
    assert "Nguyễn Văn An" in row and "operator, alert" in row and "an-binh (Xã An Bình)" in row
    ran = await users(server, "list", "--json")
    assert [u["username"] for u in json.loads(ran.out)["users"]] == ["admin", "op-an-binh"]
    # a new password; and none given is a usage error that changes nothing
    ran = await users(server, "passwd", "op-an-binh", stdin="")
    assert ran.code == 2 and "no password given" in ran.err
    ran = await users(server, "passwd", "op-an-binh", stdin="mat-khau-thu-hai\n")
    assert ran.code == 0 and ran.out.startswith("Password of op-an-binh changed")
    assert (await log_in(server, "op-an-binh", "mat-khau-thu-hai"))[0] == 200
    # a personal token, printed once, listed without it, revoked
    ran = await users(server, "token", "op-an-binh", "--name", "máy tính xã")
    assert ran.code == 0, ran.err
    token = ran.out.splitlines()[-1]
    status, me = await call(server, "GET", "/api/v1/session",
                            headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and me["user"] == "op-an-binh" and me["scope"] == "an-binh"
    ran = await users(server, "tokens", "op-an-binh", lang="vi_VN.UTF-8")
    assert ran.out.splitlines()[0].split()[:2] == ["MÃ", "TÊN"]
    assert "máy tính xã" in ran.out and token not in ran.out
    token_id = ran.out.splitlines()[1].split()[0]
    ran = await users(server, "revoke", "op-an-binh", token_id, lang="vi_VN.UTF-8")
    assert ran.code == 0 and ran.out == f"Đã thu hồi mã truy cập {token_id} của op-an-binh.\n"
    status, _ = await call(server, "GET", "/api/v1/session",
                           headers={"Authorization": f"Bearer {token}"})
    assert status == 401
    # refused by the server: its message, and status 1
    ran = await users(server, "add", "xa-khac", "--role", "operator", "--scope", "nowhere",
                      stdin="mat-khau-dau-tien\n")
    assert ran.code == 1 and "scope must be a zone id" in ran.err
    ran = await users(server, "rm", "op-an-binh")
    assert ran.code == 0 and ran.out == "Removed op-an-binh, with their tokens and sessions.\n"
    assert (await log_in(server, "op-an-binh", "mat-khau-thu-hai"))[0] == 401
