"""The operator console in a real browser (issue 15): signing in, the navigation in both
languages, what a commune operator sees, a zone taken live whose source has not connected (it
says what it waits for), every page at a desktop's and a phone's width (with screenshots to look
at), and signing in by keyboard alone. The harness: ``conftest.py``."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest

from tests.console.conftest import ADMIN, OFFICIAL, OPERATOR, Person, Station, Tab, expect
from tests.server.test_api import call

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one server and browser per module

Browse = Callable[..., Awaitable[Tab]]

# the pages of the navigation, in its order: their names in Vietnamese (the issue's) and
# English (the msgids of app.js's PAGES)
VIETNAMESE = {"overview": "Tổng quan", "live": "Phát trực tiếp", "studio": "Phòng thu",
              "alert": "Phát khẩn cấp",
              "schedule": "Lịch phát", "media": "Thư viện", "endpoints": "Cụm loa",
              "alarms": "Sự cố", "logs": "Nhật ký", "reports": "Báo cáo",
              "users": "Người dùng"}
ENGLISH = {"overview": "Overview", "live": "Go live", "studio": "Studio",
           "alert": "Emergency alert",
           "schedule": "Schedule", "media": "Media", "endpoints": "Loudspeakers",
           "alarms": "Alarms", "logs": "Logs", "reports": "Reports", "users": "Users"}
WIDTHS = {1280: 800, 390: 844}  # a desktop's and a phone's viewport (width: height), px


def named(nav: dict[str, str], names: dict[str, str]) -> None:
    """Assert that the navigation ``nav`` ({id: name}) names each page as ``names`` does (the
    logs page: any name that begins as ``names`` says, since it holds two logs)."""
    for page_id, name in nav.items():
        ok = name.startswith(names[page_id]) if page_id == "logs" else name == names[page_id]
        assert ok, f"the {page_id} page is named {name!r}, not {names[page_id]!r}: {nav}"


async def overflow(tab: Tab, page_id: str) -> list[str]:
    """A problem if the page is wider than the window (it then scrolls sideways)."""
    wide = await tab.page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    return [f"{page_id}: the page is {wide} px wider than the window"] if wide > 0 else []


async def test_an_admin_signs_in_through_the_form_and_reads_vietnamese_then_english(
        browse: Browse) -> None:
    tab = await browse()
    await tab.sign_in(ADMIN)
    page = tab.page
    await expect(page.locator("#page")).to_have_attribute("data-page", "overview")
    await expect(page.locator("html")).to_have_attribute("lang", "vi")
    nav = await tab.nav()
    assert list(nav) == list(VIETNAMESE), f"an admin sees every page: {nav}"
    named(nav, VIETNAMESE)
    await expect(page.locator("#page h1")).to_have_text(VIETNAMESE["overview"])

    await page.locator("#lang").select_option("en")  # the language switch, in the header
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator('#nav a[data-page="overview"]')).to_have_text("Overview")
    named(await tab.nav(), ENGLISH)
    await expect(page.locator("#page h1")).to_have_text("Overview")
    await tab.shown("overview")


async def test_a_commune_operator_sees_only_their_commune_and_no_alert_page(
        station: Station, browse: Browse) -> None:
    tab = await browse()
    await tab.sign_in(OPERATOR)
    nav = await tab.nav()
    assert "alert" not in nav and "users" not in nav, nav
    assert "live" in nav and "overview" in nav, nav
    overview = tab.page.locator("#page")
    # the tree shows the commune and its villages (by name), and nothing of the other commune
    for name in ("Xã An Bình", "Thôn An Bình 1", "Thôn An Bình 2"):
        await expect(overview).to_contain_text(name)
    text = await overview.inner_text()
    assert not [t for t in OPERATOR.unseen if t in text], text

    # nor does the alert page open from its address: the shell shows the overview instead
    await tab.page.goto(station.url + "/#/alert")
    await expect(tab.page).to_have_url(re.compile(r"#/overview$"))
    await tab.shown("overview")


async def test_a_zone_taken_live_without_its_source_says_it_waits_until_released(
        station: Station, browse: Browse) -> None:
    # the village taken for the studio (district live, 80) with no source connected: it plays
    # the schedule meanwhile, and the console says what it waits for beside that
    status, body = await call(station.server, "POST", "/api/v1/zones/an-binh-1/live",
                              json={"mount": "studio"})
    assert status == 201, body
    try:
        tab = await browse()
        await tab.sign_in(OPERATOR)
        page = tab.page
        note = "đang chờ nguồn: live/studio [80]"
        await expect(page.get_by_test_id("zone-waiting-an-binh-1")).to_have_text(note)
        await expect(page.get_by_test_id("zone-waiting-an-binh-1")).to_be_visible()
        for other in ("an-binh", "an-binh-2"):  # not taken: no note
            await expect(page.get_by_test_id(f"zone-waiting-{other}")).to_be_hidden()
        await tab.screenshot(f"{OPERATOR.username}-waiting-overview")

        await tab.open("live")
        for testid in ("live-waiting-an-binh-1", "live-onair-waiting-an-binh-1"):
            await expect(page.get_by_test_id(testid)).to_have_text(note)
        await expect(page.get_by_test_id("live-waiting-an-binh-2")).to_have_count(0)
        await tab.screenshot(f"{OPERATOR.username}-waiting-live")
        # released (the operator's button): the zone is given back, and the note goes
        await page.get_by_test_id("live-release-an-binh-1").click()
        await expect(page.get_by_test_id("live-waiting-an-binh-1")).to_have_count(0)
        await expect(page.get_by_test_id("live-onair-waiting-an-binh-1")).to_have_count(0)
    finally:  # the other tests see the station as it was
        status, body = await call(station.server, "DELETE", "/api/v1/zones/an-binh-1/live",
                                  json={})
        assert status == 200, body


async def test_an_alert_official_sees_the_alert_page_and_not_go_live(browse: Browse) -> None:
    tab = await browse(width=390, height=WIDTHS[390])
    await tab.sign_in(OFFICIAL)
    nav = await tab.nav()
    assert "alert" in nav and "live" not in nav and "studio" not in nav and "users" not in nav, nav
    await tab.open("alert")
    await tab.screenshot(f"{OFFICIAL.username}-390-alert")


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("person", [ADMIN, OPERATOR], ids=lambda p: p.username)
async def test_every_page_shows_without_error_at_a_desktop_and_a_phone_width(
        browse: Browse, person: Person, width: int) -> None:
    tab = await browse(width=width, height=WIDTHS[width])
    problems: list[str] = []
    await tab.page.goto(tab.station.url + "/")  # the sign-in page first
    await expect(tab.page.locator("form#login")).to_be_visible()
    await tab.settled()
    problems += await overflow(tab, "sign-in")
    if person is ADMIN:  # the same for everyone
        await tab.screenshot(f"sign-in-{width}")
    await tab.sign_in(person, load=False)
    for n, page_id in enumerate(await tab.nav()):
        if n:  # the first page is shown at sign-in (its link would not change the address)
            await tab.open(page_id)
        else:
            await expect(tab.page.locator("#page")).to_have_attribute("data-page", page_id)
        text = await tab.page.locator("#page").inner_text()
        problems += [f"{page_id}: shows {t!r}, outside the scope {person.scope}"
                     for t in person.unseen if t in text]
        problems += await overflow(tab, page_id)
        await tab.screenshot(f"{person.username}-{width}-{n:02d}-{page_id}")
        problems += [f"{page_id}: {e}" for e in tab.errors]
        tab.errors.clear()
    assert not problems, "\n".join(problems)


async def test_signing_in_by_keyboard_alone(browse: Browse) -> None:
    tab = await browse()
    page = tab.page
    await page.goto(tab.station.url + "/")
    username = page.locator("form#login input[name=username]")
    password = page.locator("form#login input[name=password]")
    await expect(username).to_be_visible()
    seen = []
    for _ in range(10):  # Tab until the username field (the form focuses it at load)
        if await username.evaluate("el => el === document.activeElement"):
            break
        await page.keyboard.press("Tab")
        seen.append(await page.evaluate("() => document.activeElement.outerHTML.slice(0, 80)"))
    else:
        pytest.fail(f"Tab never reached the username field; it went to: {seen}")
    await page.keyboard.type(ADMIN.username)
    await page.keyboard.press("Tab")
    await expect(password).to_be_focused()
    await page.keyboard.type(ADMIN.password)
    await page.keyboard.press("Enter")
    await tab.shown("overview")

    # the navigation is reached by Tab too, with a visible focus, and followed by Enter
    links = page.locator("#nav a")
    await expect(links.first).to_be_visible()
    for _ in range(40):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("() => document.activeElement.dataset.page || ''")
        if focused and focused != "overview":
            break
    else:
        pytest.fail("Tab never reached a link of the navigation after signing in")
    outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused link shows no focus"
    await page.keyboard.press("Enter")
    await tab.shown(focused)
