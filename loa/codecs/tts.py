"""Vietnamese text read aloud by espeak-ng (Debian package), cached by voice and text."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

VOICES = ("vi", "vi-vn-x-central", "vi-vn-x-south")
DEFAULT_VOICE = "vi"
MAX_TEXT_CHARS = 5000
ENGINE = "espeak-ng"


class TtsError(Exception):
    """Text could not be spoken; the message says why, for the operator."""


class TtsUnavailable(TtsError):
    pass


class Tts:
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
            raise TtsError("nothing to read aloud: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise TtsError(f"text too long to read aloud ({len(text)} > {MAX_TEXT_CHARS} chars)")
        if voice not in VOICES:
            raise TtsError(f"unknown voice {voice!r}; use one of {', '.join(VOICES)}")
        return text

    async def speak(self, text: str, voice: str = DEFAULT_VOICE) -> Path:
        """A WAV file of ``text`` spoken in ``voice``; made once, then served from the cache.
        Synthesis runs in an espeak-ng process; the loop only waits for it."""
        text = self.check(text, voice)
        path = self.cache_path(text, voice)
        if path.exists():
            return path
        exe = shutil.which(self.engine)
        if exe is None:
            raise TtsUnavailable(
                f"text-to-speech is unavailable: {self.engine} is not installed "
                f"(Debian: apt-get install {self.engine})")
        return await asyncio.to_thread(self._synthesise, exe, text, voice, path)

    def _synthesise(self, exe: str, text: str, voice: str, path: Path) -> Path:
        """Blocking: espeak-ng writes the WAV aside, then it is moved into the cache (process
        start and file I/O both stay off the event loop)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        proc = subprocess.run([exe, "-v", voice, "-w", str(tmp), "--", text],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise TtsError(f"{self.engine} failed: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
        tmp.replace(path)
        return path
