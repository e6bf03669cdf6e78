"""Generated test and demo signals, frame by frame, phase-continuous."""

from __future__ import annotations

import numpy as np

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE, Samples


class SineGenerator:
    """A sine at ``freq_hz``; ``next_frame`` returns consecutive canonical frames."""

    def __init__(self, freq_hz: float, level: float = 0.5) -> None:
        self.freq_hz = freq_hz
        self.level = level
        self._pos_samples = 0

    def next_frame(self) -> Samples:
        t = (np.arange(FRAME_SAMPLES) + self._pos_samples) / SAMPLE_RATE
        self._pos_samples += FRAME_SAMPLES
        return (self.level * np.sin(2 * np.pi * self.freq_hz * t)).astype(np.float32)


# A gentle three-note chime (C5 E5 G5), then a rest: the demo programme of `loa serve`.
CHIME_NOTES_HZ = (523.25, 659.25, 783.99)
CHIME_NOTE_FRAMES = 20  # 400 ms a note
CHIME_REST_FRAMES = 40


class ChimeGenerator:
    """Loops the demo chime, with a short fade on every note so it never clicks."""

    def __init__(self, level: float = 0.3) -> None:
        self.level = level
        self._frame_index = 0
        ramp = np.ones(FRAME_SAMPLES * CHIME_NOTE_FRAMES, dtype=np.float32)
        fade = 480
        ramp[:fade] = np.linspace(0, 1, fade)
        ramp[-fade * 4 :] = np.linspace(1, 0, fade * 4)
        self._notes = []
        n = FRAME_SAMPLES * CHIME_NOTE_FRAMES
        t = np.arange(n) / SAMPLE_RATE
        for f in CHIME_NOTES_HZ:
            self._notes.append((level * np.sin(2 * np.pi * f * t) * ramp).astype(np.float32))
        self._cycle_frames = CHIME_NOTE_FRAMES * len(CHIME_NOTES_HZ) + CHIME_REST_FRAMES

    def next_frame(self) -> Samples:
        i = self._frame_index % self._cycle_frames
        self._frame_index += 1
        note, offset = divmod(i, CHIME_NOTE_FRAMES)
        if note >= len(self._notes):
            return np.zeros(FRAME_SAMPLES, dtype=np.float32)
        start = offset * FRAME_SAMPLES
        return self._notes[note][start : start + FRAME_SAMPLES]
