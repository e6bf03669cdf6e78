"""The station's day in a real browser (issue 15's end-to-end scenarios), against real parts:
loudspeakers that are Loa's own simulators, their control side over MQTT through the server's
embedded broker (``MqttEndpoint``: they acknowledge commands) and their audio side on the
native protocol (``SimulatedEndpoint`` on ``/endpoints/<id>/ws``, decoded).

- A commune operator sees only their commune, sets a village's volume and sees each
  loudspeaker acknowledge it, uploads a bulletin and schedules it daily, and sees it on the
  calendar.
- The alert official sends a text alert to two villages, sees how many loudspeakers it will
  reach, watches the reach climb to the loudspeakers listening, and cancels it; a
  loudspeaker's decoded audio goes from the programme (a 440 Hz tone) to the alert (its
  853/960 Hz attention tone) and back, in that order.
- The admin adds a commune operator on the users page; that user sees nothing of the other
  commune and cannot act on it, not even by calling the API from the page with their session.

Every wait is on an event (the browser's, the fleet's, the decoded audio's) with a bound;
the harness (one server and one Chromium for the module) is ``conftest.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import aiohttp
import numpy as np
import pytest

from loa.app import LoaServer
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.loadtest.mqtt_endpoint import MqttEndpoint
from loa.playout.inputs.sequence import TwoTone
from loa.protocol.native import NativePacket
from tests.audio import dominant_hz
from tests.console.conftest import ADMIN, OFFICIAL, OPERATOR, Person, Station, Tab, expect
from tests.fleet.test_mqtt import broker_address, login
from tests.server.test_api import call

if TYPE_CHECKING:  # Playwright may be missing: the station fixture then skips, saying so
    from playwright.async_api import FilePayload

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one server and browser per module

Browse = Callable[..., Awaitable[Tab]]

WAIT_S = 20.0  # any one wait outside the browser (the browser's own: TIMEOUT_MS, 15 s)
RATE = 48_000  # what the native protocol's Opus decodes to
PROGRAMME_HZ = 440.0
ALERT_PRIORITY = 100  # emergency
PROGRAMME_PRIORITY = 50  # a request's default (scheduled)


# --- loudspeakers ---


@contextlib.asynccontextmanager
async def online(server: LoaServer, ids: list[str]) -> AsyncIterator[dict[str, MqttEndpoint]]:
    """The control side of loudspeakers ``ids`` (registered ones), online over MQTT through
    the server's broker, each with a fresh password; yields {id: endpoint} once the fleet
    sees them all online, and takes them offline at the end."""
    fleet = server.fleet
    await asyncio.wait_for(fleet.connected.wait(), WAIT_S)
    host, port = broker_address(server)
    eps = {eid: MqttEndpoint(eid, await login(server, eid), host, port,
                             topic_root=fleet.topics.root, telemetry_s=3600) for eid in ids}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(ep.run(stop), name=f"mqtt-{ep.id}") for ep in eps.values()]
    try:
        await fleet.until(lambda: all(fleet.is_online(e) for e in ids), WAIT_S)
        yield eps
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=5)
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):  # offline again: the next test starts clean
            await fleet.until(lambda: not any(fleet.is_online(e) for e in ids), 5)


@dataclass
class Run:
    """Consecutive packets of one programme at one priority: samples [start, end) of the
    decoded audio (48 kHz mono)."""

    priority: int
    programme: int
    start: int
    end: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / RATE


class Ear:
    """A loudspeaker's audio side: the native protocol on ``/endpoints/<id>/ws`` (so the
    server counts it in an alert's reach), every packet decoded, the audio kept as ``runs``
    of one programme and priority, in the order heard. ``until`` waits on the packets."""

    def __init__(self, server: LoaServer, endpoint_id: str) -> None:
        self.id = endpoint_id
        self.sim = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/{endpoint_id}/ws",
                                     decode=True)
        self.sim.on_packet = self._packet
        self.runs: list[Run] = []
        self._chunks = 0  # decoded chunks counted so far
        self._samples = 0
        self._heard = asyncio.Event()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[object] | None = None

    def _packet(self, _sim: SimulatedEndpoint, pkt: object) -> None:
        assert isinstance(pkt, NativePacket) and self.sim.decoder is not None
        chunks = self.sim.decoder.chunks
        start = self._samples
        self._samples += sum(len(c) for c in chunks[self._chunks:])
        self._chunks = len(chunks)
        last = self.runs[-1] if self.runs else None
        if last is not None and (last.priority, last.programme) == (pkt.priority,
                                                                     pkt.programme_id):
            last.end = self._samples
        else:
            self.runs.append(Run(pkt.priority, pkt.programme_id, start, self._samples))
        self._heard.set()

    def start(self, http: aiohttp.ClientSession) -> None:
        self.task = asyncio.create_task(self.sim.run(http, 300, self.stop), name=f"ear-{self.id}")

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, WAIT_S)

    async def until(self, what: str, predicate: Callable[[list[Run]], bool]) -> None:
        """Wait until ``predicate(runs)`` holds, re-checked at each packet heard;
        AssertionError saying ``what`` was not heard (and what was) after ``WAIT_S``."""
        try:
            async with asyncio.timeout(WAIT_S):
                while not predicate(self.runs):
                    if self.task is not None and self.task.done():
                        raise AssertionError(f"{self.id} stopped: {self.sim.report.error}")
                    self._heard.clear()
                    await self._heard.wait()
        except TimeoutError:
            raise AssertionError(f"{self.id} did not hear {what}; it heard "
                                 f"{[(r.priority, r.programme, r.seconds) for r in self.runs]}"
                                 ) from None

    def pcm(self, run: Run, skip_s: float, seconds: float) -> np.ndarray:
        """``seconds`` of ``run``'s audio from ``skip_s`` into it."""
        assert self.sim.decoder is not None
        a = run.start + int(skip_s * RATE)
        b = min(run.end, a + int(seconds * RATE))
        assert b - a >= RATE // 10, f"{self.id}: too little audio in {run}"
        return np.concatenate(self.sim.decoder.chunks)[a:b]


def with_priority(runs: list[Run], priority: int, seconds: float, *, after: int | None = None
                  ) -> bool:
    """Whether some run at ``priority`` lasts ``seconds`` or more (only runs after one at
    priority ``after``, when given)."""
    seen = after is None
    for r in runs:
        if r.priority == after:
            seen = True
        elif seen and r.priority == priority and r.seconds >= seconds:
            return True
    return False


# --- the bulletin ---


def bulletin_wav(seconds: float = 4.0, freq_hz: float = 660.0, rate: int = 44_100) -> bytes:
    """A short WAV (16-bit mono): a tone with soft edges, as a recorded bulletin stands in."""
    t = np.arange(int(seconds * rate)) / rate
    edge = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    pcm = (0.3 * np.sin(2 * np.pi * freq_hz * t) * edge * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


async def tree_zones(tab: Tab) -> set[str]:
    """The zones of the overview's tree, by id."""
    rows = tab.page.locator('[data-testid="zone-tree"] .ov-zone')
    await expect(rows.first).to_be_visible()
    return {(await r.get_attribute("data-testid") or "").removeprefix("zone-")
            for r in await rows.all()}


# --- 1. the commune operator ---


async def test_a_commune_operator_sets_a_village_volume_and_schedules_a_daily_bulletin(
        station: Station, browse: Browse) -> None:
    server = station.server
    tab = await browse()
    page = tab.page
    await tab.sign_in(OPERATOR)
    assert await tree_zones(tab) == {"an-binh", "an-binh-1", "an-binh-2"}
    text = await page.locator("#page").inner_text()
    assert not [t for t in OPERATOR.unseen if t in text], text
    await tab.screenshot("day-1-operator-overview")

    # the village's volume, acknowledged by each of its loudspeakers
    async with online(server, ["loa-001", "loa-002"]) as eps:
        await tab.open("endpoints")
        zone = page.locator('[data-testid="zone-controls"]')
        await expect(zone.get_by_test_id("zone-online-an-binh-1")).to_have_text(
            re.compile(r"^\s*2\D+2\b"))  # 2 of 2 online
        await zone.get_by_test_id("zone-volume-an-binh-1").fill("45")
        await zone.get_by_test_id("zone-volume-set-an-binh-1").click()
        command = page.locator('[data-testid="command-acks"] > li').first
        await expect(command).to_have_attribute("data-total", "2")
        for eid in eps:
            await expect(command.get_by_test_id(f"ack-{eid}")).to_have_attribute(
                "data-status", "acked")
        await expect(command).to_have_attribute("data-acked", "2")
        await expect(command.get_by_test_id("ack-summary")).to_contain_text("2")
        assert {e.id: e.state.volume_pct for e in eps.values()} == {"loa-001": 45,
                                                                   "loa-002": 45}
        await tab.shown("endpoints")
        await tab.screenshot("day-1-operator-volume-acknowledged")

    # a bulletin uploaded through the file input...
    title = "Bản tin sáng"
    await tab.open("media")
    upload: FilePayload = {"name": "ban-tin-sang.wav", "mimeType": "audio/wav",
                           "buffer": bulletin_wav()}
    await page.get_by_test_id("media-file").set_input_files(files=[upload])
    await page.get_by_test_id("media-title").fill(title)
    await page.get_by_test_id("media-upload").click()
    row = page.get_by_test_id("media-list").locator('[data-testid^="media-row-"]',
                                                    has_text=title)
    await expect(row).to_have_count(1)
    media_id = (await row.get_attribute("data-testid") or "").removeprefix("media-row-")
    await tab.shown("media")
    await tab.screenshot("day-1-operator-media-uploaded")

    # ...played every day at 06:00 in the village, from today
    await tab.open("schedule")
    today = await page.get_by_test_id("schedule-date").input_value()  # the station's
    await page.get_by_test_id("schedule-new").click()
    editor = page.get_by_test_id("schedule-editor")
    await expect(editor).to_be_visible()
    item_title = "Bản tin sáng hằng ngày"
    await editor.get_by_test_id("schedule-title").fill(item_title)
    await editor.get_by_test_id("schedule-zones").locator(
        'input[type=checkbox][value="an-binh-1"]').check()
    await editor.get_by_test_id("schedule-content-kind").select_option("media")
    await editor.get_by_test_id("schedule-media").select_option(media_id)
    await editor.get_by_test_id("schedule-start-date").fill(today)
    await editor.get_by_test_id("schedule-start-time").fill("06:00")
    await editor.get_by_test_id("schedule-repeat").select_option("daily")
    await tab.screenshot("day-1-operator-schedule-editor")
    await editor.get_by_test_id("schedule-save").click()
    await expect(editor).to_be_hidden()
    await tab.shown("schedule")

    # on the calendar: each day of this week from today, at 06:00
    calendar = page.get_by_test_id("schedule-calendar")
    events = calendar.locator('button[data-testid^="schedule-event-"]', has_text=item_title)
    await expect(events).to_have_count(7 - date.fromisoformat(today).weekday())
    await expect(calendar.get_by_test_id(f"schedule-day-{today}").locator(
        "button", has_text=item_title)).to_contain_text("06:00")
    status, body = await call(server, "GET", "/api/v1/schedules")
    assert status == 200
    [item] = [s for s in body["schedules"] if s["title"] == item_title]
    # (the API names the library item beside its id: its title)
    assert item["zones"] == ["an-binh-1"] and {k: item["content"][k] for k in ("kind", "id")} \
        == {"kind": "media", "id": media_id}
    assert item["rrule"] == "FREQ=DAILY"
    await tab.screenshot("day-1-operator-calendar")


# --- 2. the alert official ---


async def test_the_alert_official_alerts_two_villages_watches_the_reach_and_cancels(
        station: Station, browse: Browse) -> None:
    server = station.server
    villages = ["an-binh-2", "phu-my-1"]
    listening = ["loa-003", "loa-004", "loa-005"]  # loa-006 (phu-my-1) stays off
    ears = [Ear(server, eid) for eid in listening]
    async with contextlib.AsyncExitStack() as stack:
        # the programme: a 440 Hz tone on both villages (put there by the station's token),
        # released at the end
        for zone in villages:
            status, body = await call(server, "POST", f"/api/v1/zones/{zone}/requests",
                                      json={"source": {"kind": "tone",
                                                       "freq_hz": PROGRAMME_HZ}})
            assert status == 201, body
            stack.push_async_callback(call, server, "DELETE",
                                      f"/api/v1/requests/{body['request']['id']}")
        eps = await stack.enter_async_context(online(server, listening))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        stack.push_async_callback(lambda: asyncio.gather(*(e.close() for e in ears)))
        for ear in ears:
            ear.start(http)
        await asyncio.gather(*(e.until("the programme", lambda runs: with_priority(
            runs, PROGRAMME_PRIORITY, 1.0)) for e in ears))

        tab = await browse(width=390, height=844)  # on the official's phone
        page = tab.page
        await tab.sign_in(OFFICIAL)
        await tab.open("alert")
        zones = page.get_by_test_id("alert-zones")
        for zone in villages:
            await zones.locator(f'input[type=checkbox][value="{zone}"]').check()
        await page.get_by_test_id("alert-class-emergency").check()
        await page.get_by_test_id("alert-kind-text").check()
        await page.get_by_test_id("alert-text").fill(
            "Lũ đang lên. Người dân ven suối di chuyển lên chỗ cao ngay.")
        await page.get_by_test_id("alert-repeat").fill("3")  # long enough to be cancelled
        await page.get_by_test_id("alert-review").click()

        # the confirmation says how many loudspeakers it will reach: 3 online of 4
        confirm = page.get_by_test_id("alert-confirmation")
        await expect(confirm).to_be_visible()
        count = confirm.get_by_test_id("alert-confirm-count")
        await expect(count).to_have_attribute("data-online", str(len(eps)))
        await expect(count).to_have_attribute("data-registered", "4")
        await expect(count).to_have_text(re.compile(r"\b3\b.*\b4\b"))
        await tab.screenshot("day-2-official-alert-confirm")

        async with page.expect_response(lambda r: r.url.endswith("/api/v1/alerts")
                                        and r.request.method == "POST") as sent:
            await confirm.get_by_test_id("alert-confirm").click()
        answer = await sent.value
        assert answer.status == 201
        alert_id = (await answer.json())["alert"]["id"]

        # the reach climbs to the loudspeakers listening, of the 4 targeted
        progress = page.get_by_test_id("alert-progress")
        await expect(progress).to_be_visible()
        reached = progress.get_by_test_id("alert-reached")
        await expect(reached).to_have_attribute("data-targeted", "4")
        await expect(reached).to_have_attribute("data-reached", str(len(ears)))
        await expect(reached).to_have_text(re.compile(r"\b3\b.*\b4\b"))
        # every loudspeaker hears the alert (a second of it) before it is cancelled
        await asyncio.gather(*(e.until("the alert", lambda runs: with_priority(
            runs, ALERT_PRIORITY, 1.0, after=PROGRAMME_PRIORITY)) for e in ears))
        await tab.screenshot("day-2-official-alert-reach")

        async with page.expect_response(lambda r: r.url.endswith(f"/api/v1/alerts/{alert_id}")
                                        and r.request.method == "DELETE") as cancelled:
            await progress.get_by_test_id("alert-cancel").click()
        assert (await cancelled.value).status == 200
        await expect(progress.get_by_test_id("alert-cancel")).to_be_hidden()
        status, body = await call(server, "GET", f"/api/v1/alerts/{alert_id}")
        assert status == 200 and body["alert"]["status"] == "cancelled"
        assert body["alert"]["reach"]["reached"] == len(ears)

        # and the programme comes back: heard for a second after the alert
        await asyncio.gather(*(e.until("the programme after the alert", lambda runs:
                                       with_priority(runs, PROGRAMME_PRIORITY, 1.0,
                                                     after=ALERT_PRIORITY)) for e in ears))
        await tab.shown("alert")
        await tab.screenshot("day-2-official-alert-cancelled")

    for ear in ears:
        await asyncio.to_thread(heard_in_order, ear)
    # the alert's requests went with the cancel, the programme's at the end
    left = [r.label for r in server.engine.requests.values() if r.zone_id in villages]
    assert not left, left


def heard_in_order(ear: Ear) -> None:
    """Blocking (FFTs): the ear heard the programme at 440 Hz, then the alert (its attention
    tone first, no 440 Hz in it), then the same programme at 440 Hz again."""
    runs = ear.runs
    i = next(n for n, r in enumerate(runs) if r.priority == ALERT_PRIORITY)
    b = max(n for n, r in enumerate(runs[:i]) if r.priority == PROGRAMME_PRIORITY)
    a = next(n for n, r in enumerate(runs) if n > i and r.priority == PROGRAMME_PRIORITY)
    before, alert, after = runs[b], runs[i], runs[a]
    # nothing but the alert between the programme and its return
    assert {r.priority for r in runs[b + 1:a]} == {ALERT_PRIORITY}, f"{ear.id}: {runs}"
    assert after.programme == before.programme  # the programme the alert interrupted
    start = max(0.0, before.seconds - 0.6)
    assert dominant_hz(ear.pcm(before, start, 0.5)) == pytest.approx(PROGRAMME_HZ, rel=0.01)
    # the attention tone: its two tones, 240 ms each (their edges left out)...
    first_hz, second_hz = TwoTone.FREQS_HZ
    assert dominant_hz(ear.pcm(alert, 0.05, 0.15)) == pytest.approx(first_hz, rel=0.01)
    assert dominant_hz(ear.pcm(alert, 0.29, 0.15)) == pytest.approx(second_hz, rel=0.01)
    # ...and no 440 Hz anywhere in what the alert played
    heard_hz = dominant_hz(ear.pcm(alert, 0.0, alert.seconds))
    assert heard_hz != pytest.approx(PROGRAMME_HZ, rel=0.05), f"{ear.id}: {heard_hz} Hz"
    assert dominant_hz(ear.pcm(after, 0.1, 0.5)) == pytest.approx(PROGRAMME_HZ, rel=0.01)


# --- 3. the admin, and the user they add ---


async def test_a_user_the_admin_adds_with_a_scope_cannot_see_or_act_on_another_commune(
        browse: Browse) -> None:
    newcomer = Person("vanhanh-phumy", ("operator",), "phu-my",
                      unseen=("An Bình", "an-binh"))
    admin = await browse()
    await admin.sign_in(ADMIN)
    await admin.open("users")
    page = admin.page
    await page.get_by_test_id("user-add").click()
    form = page.get_by_test_id("new-user-form")
    await form.get_by_test_id("new-user-username").fill(newcomer.username)
    await form.get_by_test_id("new-user-password").fill(newcomer.password)
    await form.get_by_test_id("new-user-role-operator").check()
    await form.get_by_test_id("new-user-scope-phu-my").check()
    await admin.screenshot("day-3-admin-new-user")
    await form.get_by_test_id("new-user-save").click()
    row = page.get_by_test_id(f"user-{newcomer.username}")
    await expect(row).to_be_visible()
    await expect(page.locator("tr", has=row)).to_contain_text("Xã Phú Mỹ")
    await admin.shown("users")
    await admin.screenshot("day-3-admin-user-added")

    # the newcomer, in a browser of their own: their commune only, on every page
    tab = await browse()
    await tab.sign_in(newcomer)
    assert await tree_zones(tab) == {"phu-my", "phu-my-1", "phu-my-2"}
    nav = await tab.nav()
    assert "users" not in nav and "alert" not in nav, nav
    shown = []
    for n, page_id in enumerate(nav):
        if n:
            await tab.open(page_id)
        text = await tab.page.locator("#page").inner_text()
        shown += [f"{page_id}: shows {t!r}" for t in newcomer.unseen if t in text]
        await tab.screenshot(f"day-3-newcomer-{n:02d}-{page_id}")
    assert not shown, "\n".join(shown)
    await tab.open("live")
    live_zones = tab.page.get_by_test_id("live-zones").locator("input[type=checkbox]")
    values = {await box.get_attribute("value") for box in await live_zones.all()}
    assert values and not [v for v in values if v and v.startswith("an-binh")], values

    # nor can they act on it from the page with their session (cookie and CSRF token): the
    # same call on their own village is taken, so the refusal is the scope's
    take = """async (zone) => {
        const session = await (await fetch('/api/v1/session')).json();
        const resp = await fetch(`/api/v1/zones/${zone}/live`, {method: 'POST',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token},
            body: JSON.stringify({mount: 'studio'})});
        return [resp.status, await resp.json()];
    }"""
    status, body = await tab.page.evaluate(take, "an-binh-1")
    assert status == 403, body
    assert "an-binh-1" in body["error"], body
    status, body = await tab.page.evaluate(take, "phu-my-1")
    assert status in (200, 201), body
    released = await tab.page.evaluate("""async () => {
        const session = await (await fetch('/api/v1/session')).json();
        const resp = await fetch('/api/v1/zones/phu-my-1/live', {method: 'DELETE',
            headers: {'X-CSRF-Token': session.csrf_token}});
        return resp.status;
    }""")
    assert released == 200
    refused = "answer 403: POST /api/v1/zones/an-binh-1/live"  # the refusal asked for above
    assert refused in tab.errors
    tab.errors[:] = [e for e in tab.errors if e != refused]
