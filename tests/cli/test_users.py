"""``loa users``, as a person runs it against a real server: make an account (the password
from the standard input), list them, change a password, make, list and revoke a personal
token, remove the account; in English and in Vietnamese."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time

from loa.app import LoaServer
from tests.api.accounts import PASSWORD, add_user, log_in, token_of
from tests.cli.shell import Ran, server_env
from tests.server.test_api import call


async def users(server: LoaServer, *args: str, stdin: str = "", lang: str = "en_US.UTF-8",
                token: str | None = None) -> Ran:
    """``loa users ARGS`` with ``stdin`` as its standard input (not a terminal), with the
    admin token or ``token``."""
    env = server_env(server, LANG=lang)
    if token is not None:
        env["LOA_TOKEN"] = token
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "loa", "users", *args], env=env,
        input=stdin.encode(), capture_output=True, timeout=60, check=False)
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
    # a zone that does not exist: said before the password is asked (none is read here)
    ran = await users(server, "add", "xa-khac", "--role", "operator", "--scope", "nowhere",
                      stdin="")
    assert ran.code == 1 and ran.err.startswith("loa users: There is no zone 'nowhere'")
    ran = await users(server, "rm", "op-an-binh")
    assert ran.code == 0 and ran.out == "Removed op-an-binh, with their tokens and sessions.\n"
    assert (await log_in(server, "op-an-binh", "mat-khau-thu-hai"))[0] == 401


async def test_a_user_changes_their_own_password_with_the_current_one(server: LoaServer) -> None:
    """Who is no admin gives their current password first (the first line of a pipe), and a
    wrong one is said as such, not as a token without the right."""
    await add_user(server, "op-an-binh", "operator", "an-binh")
    token = (await token_of(server, "op-an-binh"))["Authorization"].split()[1]
    ran = await users(server, "passwd", "op-an-binh", token=token,
                      stdin=f"{PASSWORD}\nmat-khau-moi-cua-toi\n")
    assert ran.code == 0, ran.err
    assert (await log_in(server, "op-an-binh", "mat-khau-moi-cua-toi"))[0] == 200
    ran = await users(server, "passwd", "op-an-binh", token=token, lang="vi_VN.UTF-8",
                      stdin="khong-phai-mat-khau\nmat-khau-khac-nua\n")
    assert ran.code == 1 and ran.err == ("loa users: mật khẩu hiện tại không đúng: không có "
                                         "gì thay đổi\n")
    assert (await log_in(server, "op-an-binh", "mat-khau-khac-nua"))[0] == 401
    # what they may not do is said before any password is asked (none is given here)
    ran = await users(server, "passwd", "admin", token=token)
    assert ran.code == 1 and "the server refused (403)" in ran.err
    ran = await users(server, "add", "xa-khac", "--role", "viewer", "--scope", "an-binh",
                      token=token, lang="vi_VN.UTF-8")
    assert ran.code == 1 and ran.err == (
        "loa users: chỉ quản trị viên mới tạo được tài khoản; mã truy cập này là của "
        "op-an-binh, với các quyền: operate\n")
    ran = await users(server, "add", "xa-khac", "--role", "boss", "--scope", "an-binh")
    assert ran.code == 2 and ran.err == ("loa users: unknown role 'boss': the roles are admin, "
                                         "operator, alert, viewer\n")
    ran = await users(server, "add", "xa-khac", "--role", "viewer", "--scope", "phu-my",
                      token=(await token_of_admin_of(server, "an-binh")))
    assert ran.code == 1 and "zone 'phu-my' is outside your scope (an-binh)" in ran.err
    assert ran.err.count("the server refused") == 1


async def token_of_admin_of(server: LoaServer, scope: str) -> str:
    """A personal token of a new admin of ``scope``."""
    await add_user(server, f"admin-{scope}", "admin", scope)
    return (await token_of(server, f"admin-{scope}"))["Authorization"].split()[1]


def ctrl_d_at_the_prompt(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Blocking: ``argv`` on a terminal of its own (a pty, its controlling terminal); Ctrl-D
    typed at its first prompt. Returns its exit status and what the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the pty
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)  # never back into the test's process
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while b": " not in shown.rsplit(b"\n", 1)[-1]:  # the prompt ends with ": "
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no prompt: {shown!r}"
            shown += os.read(fd, 4096)
        os.write(fd, b"\x04")
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the command ended, its terminal closed
                break
            if not data:
                break
            shown += data
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


async def test_ctrl_d_at_the_password_prompt_ends_without_a_traceback(server: LoaServer) -> None:
    env = server_env(server, LANG="vi_VN.UTF-8")
    code, shown = await asyncio.to_thread(
        ctrl_d_at_the_prompt, [sys.executable, "-m", "loa", "users", "add", "xa-moi", "--role",
                               "viewer", "--scope", "an-binh"], env)
    assert code == 2 and "Traceback" not in shown, shown
    assert shown.startswith("Mật khẩu mới: ")
    assert shown.rstrip().endswith("loa users: chưa nhập mật khẩu: không có gì thay đổi")
