"""``LOA_ADMIN_PASSWORD``: the first admin's password, given at the first start (as
``LOA_ADMIN_TOKEN`` gives the admin token) instead of a random one shown once; a later start
leaves the account as it is (its password may have been changed since)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from loa.app import LoaServer
from loa.config import ConfigError, MqttConfig, load_config
from tests.api.accounts import log_in
from tests.conftest import LOOPBACK_FETCHES

PASSWORD = "mat-khau-quan-tri"


async def start(data_dir: Path, env: dict[str, str]) -> LoaServer:
    """A server configured from ``env`` as ``loa serve`` reads it."""
    cfg = replace(load_config(None, env={"LOA_LISTEN": "127.0.0.1:0", "LOA_DEMO": "0",
                                         "LOA_DATA_DIR": str(data_dir), **env}),
                  mqtt=MqttConfig(listen_port=0), fetch_policy=LOOPBACK_FETCHES)
    server = await asyncio.to_thread(LoaServer, cfg)  # opens its database: beside the loop
    await server.start()
    return server


async def test_the_first_admin_gets_the_password_of_the_environment(tmp_path: Path) -> None:
    server = await start(tmp_path / "data", {"LOA_ADMIN_PASSWORD": PASSWORD})
    try:
        assert server.new_admin_password is None  # nothing to show: the operator chose it
        status, body, _ = await log_in(server, "admin", PASSWORD)
        assert status == 200, body
        assert body["user"]["roles"] == ["admin"] and body["csrf_token"]
        status, _, _ = await log_in(server, "admin", "mat-khau-khac-han")
        assert status == 401
    finally:
        await server.stop()
    # a later start with another password leaves the account as it was
    server = await start(tmp_path / "data", {"LOA_ADMIN_PASSWORD": "mat-khau-moi-hon"})
    try:
        status, _, _ = await log_in(server, "admin", PASSWORD)
        assert status == 200
        status, _, _ = await log_in(server, "admin", "mat-khau-moi-hon")
        assert status == 401
    finally:
        await server.stop()


async def test_without_it_the_first_admin_gets_a_random_password_shown_once(
        tmp_path: Path) -> None:
    server = await start(tmp_path / "data", {})
    try:
        assert server.new_admin_password
        status, body, _ = await log_in(server, "admin", server.new_admin_password)
        assert status == 200, body
    finally:
        await server.stop()


def test_a_password_too_short_is_refused_with_the_configuration() -> None:
    with pytest.raises(ConfigError, match="LOA_ADMIN_PASSWORD must have 8 to 1024 characters"):
        load_config(None, env={"LOA_ADMIN_PASSWORD": "ngan"})
    assert load_config(None, env={"LOA_ADMIN_PASSWORD": "adminpass"}).admin_password == \
        "adminpass"
