"""The alarms in the console when a district has more than a status carries (a broker lost:
every endpoint offline): the alarms page lists them all, following changes through GET
alarms; the overview says how many it does not show. The harness: ``conftest.py``."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from loa.api.status import STATUS_ALARMS
from loa.config import AlarmConfig
from tests.console.conftest import ADMIN, Station, Tab, expect
from tests.server.test_api import call

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one server and browser per module


async def test_a_district_of_offline_endpoints_is_listed_whole_and_followed(
        station: Station, browse: Callable[..., Awaitable[Tab]]) -> None:
    server = station.server
    server.config = replace(server.config, alarms=AlarmConfig(offline_minutes=0, hold_s=0,
                                                                  loop_lag_ms=60_000))
    rows = "".join(f"xa-{i:04d},Cụm loa {i},an-binh-1\n" for i in range(150))
    assert not (await server.endpoints.import_csv(("id,name,zone\n" + rows).encode())).errors
    await server.check_alarms()
    total = len([a for a in server.alarms.active() if a.kind == "endpoint_offline"])
    assert total == len(server.endpoints.endpoints) > STATUS_ALARMS

    tab = await browse()
    await tab.sign_in(ADMIN)
    # (offline ones and whatever else stands: a loop running late on a busy machine)
    more = tab.page.get_by_test_id("overview-alarms-more")
    await expect(more).to_contain_text(f"{STATUS_ALARMS} sự cố mới nhất trong ")
    said_total = int(re.search(r"trong (\d+)", await more.inner_text()).group(1))  # type: ignore[union-attr]
    assert said_total >= total
    await tab.open("alarms")
    active = tab.page.get_by_test_id("alarms-active")
    offline = active.locator("tbody tr", has=tab.page.locator('[data-kind="endpoint_offline"]'))
    await expect(offline).to_have_count(total)
    await expect(tab.page.get_by_test_id("alarms-count")).to_have_text(re.compile(r"\d+"))
    assert int(await tab.page.get_by_test_id("alarms-count").inner_text()) >= total
    # one endpoint fewer: the next status shows a changed list, and the page fetches it whole
    assert (await call(server, "DELETE", "/api/v1/endpoints/xa-0007"))[0] == 200
    await expect(offline).to_have_count(total - 1)
    await expect(active).not_to_contain_text("xa-0007")
    assert not tab.errors, tab.errors
