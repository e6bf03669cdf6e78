"""The browser studio and the WebRTC listen button (issue 16 §2 and §3), in Debian's Chromium.

- Chromium's fake microphone plays a WAV of clicks (10 ms of 1 kHz every 500 ms,
  ``loa.loadtest.clicks``); a commune operator opens the studio page, sees the microphone's
  level, picks a village and goes on air. The page pushes the microphone to ``/whip/studio``
  with the console's session and takes the village for the mount; a loudspeaker simulated on
  the native protocol (``SimulatedEndpoint``, decoded) hears the clicks, 500 ms apart in its
  decoded audio. Pressed again, the page gives the village back and ends the WHIP session;
  the loudspeaker hears the fallback (the demo chime, at fill priority).
- The overview's listen button plays the zone over WHEP: the ``<audio>`` element's source
  is a live WebRTC track that has received packets (unmuted) and carries sound (a WebAudio
  analyser on it).

The harness is ``conftest.py``'s; this module launches its Chromium with a fake microphone.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from loa.app import LoaServer
from loa.loadtest.clicks import ClickTrack, find_clicks
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.protocol.native import NativePacket
from tests.console.conftest import OPERATOR, Station, Tab, expect, open_station

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one server and browser per module

Browse = Callable[..., Awaitable[Tab]]

VILLAGE = "an-binh-1"
COMMUNE_LIVE = 70  # what an operator scoped to a commune takes a zone at
FILL = 10  # the demo chime's priority: what the village falls back to
CLICKS = ClickTrack()  # 10 ms of 1 kHz every 500 ms, 10 s, looped by Chromium
CLICKS_HEARD = 9
WAIT_S = 20.0
CHECK_PACKETS = 10  # the ear searches its audio for clicks every 10 packets (200 ms)
RATE = 48_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def station(tmp_path_factory: pytest.TempPathFactory, artifacts: Path
                  ) -> AsyncIterator[Station]:
    """The harness's server and Chromium, its microphone a fake one playing ``CLICKS``
    (and allowed without asking)."""
    folder = tmp_path_factory.mktemp("studio")
    wav = await asyncio.to_thread(CLICKS.write_wav, folder / "clicks.wav")
    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]
    async with open_station(folder / "data", artifacts, args) as found:
        yield found


class Ear:
    """A loudspeaker of ``VILLAGE`` on the native protocol: each packet's priority and its
    decoded audio (48 kHz mono), in the order heard. ``until`` waits on the packets."""

    def __init__(self, server: LoaServer) -> None:
        self.sim = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/{VILLAGE}/ws",
                                     decode=True)
        self.sim.on_packet = self._packet
        self.heard: list[tuple[int, np.ndarray]] = []
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._http = aiohttp.ClientSession()
        self._task = asyncio.create_task(self.sim.run(self._http, 120, self._stop),
                                         name="studio-ear")

    def _packet(self, sim: SimulatedEndpoint, pkt: object) -> None:
        assert isinstance(pkt, NativePacket) and sim.decoder is not None
        self.heard.append((pkt.priority, sim.decoder.chunks[-1]))
        self._changed.set()

    async def live_clicks(self) -> list[int]:
        """The clicks' onsets in what was heard at commune-live priority so far (one
        stretch), searched beside the loop: seconds of audio are a few ms of work."""
        chunks = [pcm for prio, pcm in self.heard if prio == COMMUNE_LIVE]
        return await asyncio.to_thread(lambda: clicks_in(np.concatenate(chunks))
                                       if chunks else [])

    async def until_clicks(self, count: int) -> list[int]:
        """Wait until ``count`` clicks were heard live, searching every ``CHECK_PACKETS``
        packets; their onsets. AssertionError after ``WAIT_S``."""
        onsets: list[int] = []
        try:
            async with asyncio.timeout(WAIT_S):
                while len(onsets := await self.live_clicks()) < count:
                    wanted = len(self.heard) + CHECK_PACKETS
                    await self.until("packets", lambda n=wanted: len(self.heard) >= n)
        except TimeoutError:
            raise AssertionError(f"{count} clicks not heard in {WAIT_S:g} s (heard "
                                 f"{len(onsets)} in {len(self.heard)} packets)") from None
        return onsets

    async def until(self, what: str, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked at each packet; AssertionError saying
        ``what`` was not heard after ``WAIT_S``."""
        try:
            async with asyncio.timeout(WAIT_S):
                while not predicate():
                    if self._task.done():
                        raise AssertionError(f"the ear stopped: {self.sim.report.error}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            prios = sorted({p for p, _ in self.heard})
            raise AssertionError(f"{what} not heard in {WAIT_S:g} s (priorities heard: "
                                 f"{prios}, packets {len(self.heard)})") from None

    async def close(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self._task, 5)
        finally:
            await self._http.close()


def clicks_in(pcm: np.ndarray) -> list[int]:
    """The clicks' onsets in ``pcm`` (sample indices); the first and last may be cut."""
    return find_clicks(pcm, threshold=0.1)


async def test_an_operator_goes_on_air_from_the_studio_page_and_a_loudspeaker_hears_the_clicks(
        station: Station, browse: Browse) -> None:
    server = station.server
    tab = await browse()
    await tab.sign_in(OPERATOR)
    await tab.open("studio")
    page = tab.page
    # the fake microphone is listed, and its level shows the clicks (-6 dBFS peaks)
    await expect(page.get_by_test_id("studio-mic").locator("option")).not_to_have_count(0)
    await page.wait_for_function(
        "() => +document.querySelector('[data-testid=studio-level]')"
        ".getAttribute('aria-valuenow') > -20")
    on_air = page.get_by_test_id("studio-onair")
    await expect(on_air).to_be_disabled()  # no zone chosen yet
    await page.get_by_test_id("studio-zones").locator(f"input[value={VILLAGE}]").check()
    await expect(on_air).to_be_enabled()

    ear = Ear(server)
    try:
        await ear.until("the village's programme", lambda: len(ear.heard) > 5)
        await on_air.click()
        await expect(page.get_by_test_id("studio-state")).to_have_attribute("data-state", "on")
        await expect(on_air).to_have_attribute("aria-pressed", "true")
        mount = server.mounts.get("studio")
        assert mount.describe()["kind"] == "webrtc"
        # the village is live from the mount at commune-live priority, and hears the clicks
        onsets = await ear.until_clicks(CLICKS_HEARD + 1)
        # the first interval straddles the zone's switch to the mount (it starts mid-period)
        spacing_ms = np.diff(onsets)[1:] * 1000 / RATE
        period_ms = CLICKS.period_s * 1000
        # (not np.median: its first call imports numpy.ma, 12 ms on the loop)
        assert statistics.median(spacing_ms) == pytest.approx(period_ms, abs=5), spacing_ms
        # a frame lost on a busy machine moves one click by 20 ms: most are on the beat
        near = np.abs(spacing_ms - period_ms) <= 25
        assert near.mean() >= 0.7, f"clicks 500 ms apart: {spacing_ms}"
        # the connection's figures: a round trip from the start, then a loss figure
        await expect(page.get_by_test_id("studio-rtt")).to_have_text(re.compile(r"^\d+ ms$"))
        await expect(page.get_by_test_id("studio-loss")).to_have_text(re.compile(r"%$"))
        await expect(page.get_by_test_id("studio-latency")).to_have_text(re.compile(r"ms"))
        await tab.screenshot("studio-on-air-1280")

        # pressed again: the village is given back and the WHIP session ends
        await on_air.click()
        await expect(page.get_by_test_id("studio-state")).to_have_attribute("data-state", "off")
        await expect(on_air).to_have_attribute("aria-pressed", "false")
        live_packets = len([p for p, _ in ear.heard if p == COMMUNE_LIVE])
        last_live = max(i for i, (p, _) in enumerate(ear.heard) if p == COMMUNE_LIVE)
        await ear.until("the fallback after the village was given back",
                        lambda: len(ear.heard) - last_live > 25)
        after = [p for p, _ in ear.heard[last_live + 1:]]
        assert set(after) == {FILL}, after
        assert len([p for p, _ in ear.heard if p == COMMUNE_LIVE]) == live_packets
        assert server.webrtc.describe()["sessions"] == {}
        assert mount.session is None
        assert not server.engine.channels[VILLAGE].describe()["requests"] or all(
            r["priority"] != COMMUNE_LIVE
            for r in server.engine.channels[VILLAGE].describe()["requests"])
    finally:
        await ear.close()


async def test_the_studio_page_fits_a_phone(browse: Browse) -> None:
    tab = await browse(width=390, height=844)
    await tab.sign_in(OPERATOR)
    await tab.open("studio")
    await expect(tab.page.get_by_test_id("studio-onair")).to_be_visible()
    wide = await tab.page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert wide <= 0, f"the studio page is {wide} px wider than a phone"
    await tab.screenshot("studio-390")


async def test_the_listen_button_plays_the_zone_over_webrtc(
        station: Station, browse: Browse) -> None:
    tab = await browse()
    await tab.sign_in(OPERATOR)
    page = tab.page
    await page.get_by_test_id(f"listen-{VILLAGE}").click()
    player = page.get_by_test_id("listen-player")
    await expect(player).to_have_attribute("data-mode", "webrtc")
    # the <audio> element plays a live WebRTC track that has had packets (a remote track is
    # muted until its first packet arrives)...
    await page.wait_for_function("""() => {
        const audio = document.querySelector('[data-testid=listen-audio]');
        const track = audio.srcObject && audio.srcObject.getAudioTracks()[0];
        return track && track.readyState === 'live' && !track.muted && !audio.paused;
    }""")
    assert [s.resource for s in station.server.webrtc.sessions.values()] == ["whep"]
    # ...and carries the zone's sound (the demo chime, whose notes come within seconds)
    await page.evaluate("""() => {
        const audio = document.querySelector('[data-testid=listen-audio]');
        const ctx = new AudioContext();
        const analyser = ctx.createAnalyser();
        analyser.fftSize = 2048;
        ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
        const buf = new Float32Array(analyser.fftSize);
        window.__peak = 0;
        window.__probe = setInterval(() => {
            analyser.getFloatTimeDomainData(buf);
            for (const x of buf) window.__peak = Math.max(window.__peak, Math.abs(x));
        }, 20);
    }""")
    await page.wait_for_function("() => window.__peak > 0.01")
    await tab.screenshot("overview-listen-webrtc-1280")
    # stopping ends the viewer's session on the server (its DELETE answered)
    async with page.expect_response(lambda r: r.request.method == "DELETE"
                                    and "/whep/zones/" in r.url) as deleted:
        await page.get_by_test_id("listen-stop").click()
    assert (await deleted.value).status == 200
    await expect(player).to_be_hidden()
    assert station.server.webrtc.describe()["sessions"] == {}


async def test_without_webrtc_the_listen_button_falls_back_to_the_http_stream(
        browse: Browse) -> None:
    tab = await browse()
    await tab.context.add_init_script("delete window.RTCPeerConnection;")  # an old browser
    await tab.sign_in(OPERATOR)
    page = tab.page
    await page.get_by_test_id(f"listen-{VILLAGE}").click()
    player = page.get_by_test_id("listen-player")
    await expect(player).to_have_attribute("data-mode", "http")
    audio = page.get_by_test_id("listen-audio")
    await expect(audio).to_have_attribute("src", f"/zones/{VILLAGE}/stream.mp3")
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=listen-audio]').currentTime > 0")
    await page.get_by_test_id("listen-stop").click()
    await expect(player).to_be_hidden()
