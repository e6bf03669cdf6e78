"""What a listener hears: frequency and level of decoded audio, and ffmpeg as the peer."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def dominant_hz(pcm: np.ndarray, rate: int = 48000) -> float:
    """The strongest frequency, with parabolic interpolation between FFT bins."""
    x = np.asarray(pcm, dtype=np.float64)
    x = x - x.mean()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + shift) * rate / len(x)


def rms(pcm: np.ndarray) -> float:
    x = np.asarray(pcm, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def make_tone_file(path: Path, freq_hz: float, seconds: float, args: list[str],
                   rate: int = 44100, channels: int = 2) -> Path:
    """An encoded test tone made by the real ffmpeg CLI."""
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"sine=frequency={freq_hz}:sample_rate={rate}:duration={seconds}",
         "-ac", str(channels), *args, str(path)],
        check=True,
    )
    return path


async def tone_file(path: Path, freq_hz: float, seconds: float, args: list[str],
                    rate: int = 44100, channels: int = 2) -> Path:
    """``make_tone_file`` beside the loop (ffmpeg's start and run would block it)."""
    return await asyncio.to_thread(make_tone_file, path, freq_hz, seconds, args, rate, channels)


async def tone_bytes(path: Path, freq_hz: float, seconds: float, args: list[str],
                     rate: int = 44100, channels: int = 2) -> bytes:
    """The encoded bytes of a ``make_tone_file`` tone, made and read beside the loop."""
    return await asyncio.to_thread(
        lambda: make_tone_file(path, freq_hz, seconds, args, rate, channels).read_bytes())


async def ffmpeg_pull(url: str, seconds: float, timeout_s: float = 20.0) -> np.ndarray:
    """Decode ``seconds`` of a stream with the ffmpeg CLI; 48 kHz mono float32."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-i", url, "-t", str(seconds),
        "-f", "f32le", "-ac", "1", "-ar", "48000", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, err.decode()
    return np.frombuffer(out, dtype=np.float32)


async def ffmpeg_push(url: str, *, freq_hz: float = 1000.0, seconds: float = 30.0,
                      codec_args: list[str], input_file: Path | None = None
                      ) -> asyncio.subprocess.Process:
    """Go live like a station: the real ffmpeg CLI pushing Icecast-style, in real time."""
    src = ["-i", str(input_file)] if input_file else [
        "-f", "lavfi", "-i", f"sine=frequency={freq_hz}:sample_rate=44100:duration={seconds}"]
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re", *src, "-ac", "2", *codec_args,
        url, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


MP3_PUSH = ["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", "-content_type", "audio/mpeg"]
OPUS_PUSH = ["-c:a", "libopus", "-b:a", "64k", "-page_duration", "20000", "-f", "ogg",
             "-content_type", "audio/ogg"]


async def closed(writer: asyncio.StreamWriter) -> None:
    """Close a raw client connection and wait until it is (an unclosed one warns later)."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
