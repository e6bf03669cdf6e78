"""Vietnamese text read aloud by espeak-ng (Debian package), cached by voice and text."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
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

    async def speak(self, text: str, voice: str = DEFAULT_VOICE) -> Path:
        """A WAV file of ``text`` spoken in ``voice``; made once, then served from the cache."""
        text = " ".join(text.split())
        if not text:
            raise TtsError("nothing to read aloud: the text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise TtsError(f"text too long to read aloud ({len(text)} > {MAX_TEXT_CHARS} chars)")
        if voice not in VOICES:
            raise TtsError(f"unknown voice {voice!r}; use one of {', '.join(VOICES)}")
        path = self.cache_path(text, voice)
        if path.exists():
            return path
        exe = shutil.which(self.engine)
        if exe is None:
            raise TtsUnavailable(
                f"text-to-speech is unavailable: {self.engine} is not installed "
                f"(Debian: apt-get install {self.engine})")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        proc = await asyncio.create_subprocess_exec(
            exe, "-v", voice, "-w", str(tmp), "--", text,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise TtsError(f"{self.engine} failed: {err.decode(errors='replace').strip()}")
        tmp.replace(path)
        return path
