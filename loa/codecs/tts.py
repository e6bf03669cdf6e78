"""Vietnamese text read aloud by espeak-ng (Debian package), cached by voice and text.

espeak-ng sends its WAV down a pipe and Loa writes the file: espeak-ng writing a file itself
exits 0 on a full disk and leaves a truncated file, which the cache would then keep. A disk
that has no room raises ``DiskFull`` (an ``OSError``, not a ``TtsError``: the API answers 507,
an alert plays its tone alone and says why); so does espeak-ng killed by ``SIGXFSZ`` (under a
file-size limit, ``ulimit -f``: its audio library sizes a 64 MB shared-memory file even when
it only writes to a pipe).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import shutil
import signal
import subprocess
import wave
from pathlib import Path

from loa.core.disk import DiskFull, write_atomically
from loa.core.i18n import N_, Explained, Message

VOICES = ("vi", "vi-vn-x-central", "vi-vn-x-south")
DEFAULT_VOICE = "vi"
MAX_TEXT_CHARS = 5000
ENGINE = "espeak-ng"


class TtsError(Explained):
    """Text could not be spoken; the message says why, for the operator."""


class TtsUnavailable(TtsError):
    """The speech engine is not installed."""


class Tts:
    """Text to speech into ``cache_dir`` (``<sha256 of engine, voice, text>.wav``), made
    once per text and voice."""

    def __init__(self, cache_dir: Path, engine: str = ENGINE) -> None:
        self.cache_dir = cache_dir
        self.engine = engine

    @property
    def available(self) -> bool:
        return shutil.which(self.engine) is not None

    def cache_path(self, text: str, voice: str) -> Path:
        key = hashlib.sha256(f"{self.engine}\0{voice}\0{text}".encode()).hexdigest()
        return self.cache_dir / f"{key}.wav"

    @staticmethod
    def check(text: str, voice: str) -> str:
        """The text as it will be spoken (whitespace folded). Raises ``TtsError`` for empty
        or over-long text or an unknown voice. No I/O: safe to call anywhere."""
        text = " ".join(text.split())
        if not text:
            raise TtsError(N_("nothing to read aloud: the text is empty"))
        if len(text) > MAX_TEXT_CHARS:
            raise TtsError(N_("text too long to read aloud ({n} > {limit} chars)"), n=len(text),
                           limit=MAX_TEXT_CHARS)
        if voice not in VOICES:
            raise TtsError(N_("unknown voice {voice!r}; use one of {voices}"), voice=voice,
                           voices=", ".join(VOICES))
        return text

    async def speak(self, text: str, voice: str = DEFAULT_VOICE) -> Path:
        """A WAV file of ``text`` spoken in ``voice``; made once, then served from the cache.
        Synthesis runs in an espeak-ng process; the loop only waits for it. Raises
        ``TtsError`` (bad text, no engine, the engine failed) or ``DiskFull`` (no room for
        the file)."""
        text = self.check(text, voice)
        path = self.cache_path(text, voice)
        if path.exists():
            return path
        exe = shutil.which(self.engine)
        if exe is None:
            raise TtsUnavailable(
                N_("text-to-speech is unavailable: {engine} is not installed "
                   "(Debian: apt-get install {engine})"), engine=self.engine)
        return await asyncio.to_thread(self._synthesise, exe, text, voice, path)

    def _synthesise(self, exe: str, text: str, voice: str, path: Path) -> Path:
        """Blocking: espeak-ng speaks into a pipe; the WAV, its header completed, is written
        aside and moved into the cache (process start and file I/O both stay off the event
        loop). Raises TtsError, or DiskFull."""
        proc = subprocess.run([exe, "-v", voice, "--stdout", "--", text],
                              capture_output=True, check=False)
        if proc.returncode == -signal.SIGXFSZ:
            raise DiskFull(Message(N_("the text read aloud")), errno.EFBIG)
        if proc.returncode != 0 or not proc.stdout:
            raise TtsError(N_("{engine} failed: {problem}"), engine=self.engine,
                           problem=proc.stderr.decode(errors="replace").strip())
        data = _complete_wav(proc.stdout, self.engine)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, "the text read aloud")
        return path


def _complete_wav(data: bytes, engine: str) -> bytes:
    """A WAV sent down a pipe has no sizes in its header (the sender cannot seek back to
    write them): the same samples with a complete header. Raises TtsError if it is not WAV."""
    try:
        with wave.open(io.BytesIO(data)) as src:
            params = src.getparams()
            frames = src.readframes(src.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TtsError(N_("{engine} sent no WAV audio ({problem})"), engine=engine,
                       problem=str(exc)) from None
    out = io.BytesIO()
    with wave.open(out, "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames)
    return out.getvalue()
