from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loa.codecs.decode import (
    ByteFeed,
    DecodeError,
    FrameDecoder,
    UnsupportedFormat,
    decode_file,
    format_for_content_type,
)
from loa.core.pcm import FRAME_SAMPLES
from tests.audio import dominant_hz, make_tone_file, rms

FORMATS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "aac": ["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
    "opus.ogg": ["-c:a", "libopus", "-b:a", "64k"],
    "vorbis.ogg": ["-c:a", "vorbis", "-strict", "-2", "-ac", "2"],
    "wav": ["-c:a", "pcm_s16le"],
    "flac": ["-c:a", "flac"],
}


@pytest.fixture(scope="module")
def tone_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tones")
    return {ext: make_tone_file(d / f"tone.{ext}", 1000, 2.0, args)
            for ext, args in FORMATS.items()}


@pytest.mark.parametrize("ext", list(FORMATS))
def test_every_input_format_decodes_to_canonical_frames(tone_files: dict[str, Path],
                                                        ext: str) -> None:
    frames = list(decode_file(str(tone_files[ext])))
    assert all(f.dtype == np.float32 and f.shape == (FRAME_SAMPLES,) for f in frames)
    # 2 s at 20 ms a frame, give or take codec padding
    assert 98 <= len(frames) <= 106
    pcm = np.concatenate(frames[5:-5])
    assert dominant_hz(pcm) == pytest.approx(1000, rel=0.01)
    # a stereo sine at full level 0.125 (ffmpeg's lavfi sine) downmixes to mono audibly
    assert rms(pcm) > 0.05


def test_44k1_input_is_resampled_to_48k(tone_files: dict[str, Path]) -> None:
    dec = FrameDecoder(str(tone_files["flac"]))
    assert dec.input_rate == 44100
    pcm = np.concatenate(list(dec))
    assert len(pcm) == pytest.approx(2 * 48000, abs=FRAME_SAMPLES)


def test_garbage_raises_a_typed_error_naming_the_input(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp3"
    bad.write_text("this is a text file, renamed to .mp3\n" * 200)
    with pytest.raises(DecodeError, match="notes.mp3"):
        list(decode_file(str(bad)))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="no such file"):
        FrameDecoder(str(tmp_path / "absent.mp3"))


def test_file_without_audio_is_unsupported(tmp_path: Path) -> None:
    import subprocess

    from tests.audio import FFMPEG

    video = tmp_path / "still.mkv"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=black:s=32x32:d=0.2", "-c:v", "ffv1", str(video)], check=True)
    with pytest.raises(UnsupportedFormat, match="no audio stream"):
        FrameDecoder(str(video))


def test_content_types() -> None:
    assert format_for_content_type("audio/mpeg") == "mp3"
    assert format_for_content_type("audio/ogg; codecs=opus") == "ogg"
    assert format_for_content_type("audio/aac") == "aac"
    with pytest.raises(UnsupportedFormat, match="video/mp4"):
        format_for_content_type("video/mp4")


def test_byte_feed_reports_backpressure() -> None:
    feed = ByteFeed(limit_bytes=100)
    assert feed.write(b"x" * 50)
    assert not feed.write(b"x" * 60)
    assert feed.read(200) == b"x" * 110
    feed.close()
    assert feed.read(10) == b""
