"""A disk with no room (issue 13): the write errors that mean it become ``DiskFull`` saying
what could not be written, a failed write leaves no partial file, and the partial files a
killed process left are swept at start.

``/dev/full`` is the kernel's full device: every write to it fails with ``ENOSPC``, as on a
full filesystem. A file-size limit (``RLIMIT_FSIZE``, in a child process, ``SIGXFSZ``
ignored as ``loa serve`` ignores it) makes every write that would grow a file fail with
``EFBIG``, which is how a write that needs new room fails under it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loa.core.disk import DiskFull, is_disk_full, sweep_partials, writing


def test_a_write_to_a_full_device_is_disk_full_naming_what_was_not_written() -> None:
    with pytest.raises(DiskFull) as caught, writing("the upload 'tin.mp3'"), \
            open("/dev/full", "wb", buffering=0) as full:
        full.write(b"audio")
    assert str(caught.value) == ("the data disk is full: the upload 'tin.mp3' cannot be "
                                 "written (no space left on the device)")
    assert caught.value.errno == errno.ENOSPC and is_disk_full(caught.value)
    assert isinstance(caught.value, OSError)  # what passes over a failed write passes it too
    with pytest.raises(FileNotFoundError), writing("x"):  # other errors pass unchanged
        open("/nonexistent/loa/file", "rb")  # noqa: SIM115


CHILD = """
import json, resource, signal, sys
from pathlib import Path
from loa.core.disk import DiskFull, write_atomically
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
folder = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
write_atomically(folder / "small", b"x" * 500, "a small file")
try:
    write_atomically(folder / "large", b"x" * 5000, "the text read aloud")
except DiskFull as exc:
    print(json.dumps({"error": str(exc), "errno": exc.errno}))
"""


def test_a_write_past_a_file_size_limit_is_disk_full_and_leaves_nothing(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True,
                          timeout=30, check=True)
    assert json.loads(proc.stdout) == {
        "error": "the data disk is full: the text read aloud cannot be written (over the "
                 "process's file-size limit)", "errno": errno.EFBIG}
    assert sorted(os.listdir(tmp_path)) == ["small"]  # no partial "large" left behind
    assert (tmp_path / "small").read_bytes() == b"x" * 500


def test_the_partial_files_of_a_killed_run_are_swept(tmp_path: Path) -> None:
    incoming, tts, gone = tmp_path / "incoming", tmp_path / "tts", tmp_path / "never-made"
    incoming.mkdir()
    tts.mkdir()
    (incoming / "4f2a.part").write_bytes(b"x" * 1234)
    (tts / "abc.wav.1f2e3d4c.part").write_bytes(b"y" * 10)
    (tts / "abc.wav").write_bytes(b"RIFF")  # a finished file stays
    (incoming / "kept.part.d").mkdir()  # not a file
    (incoming / "link.part").symlink_to(tts / "abc.wav")  # not followed, not removed
    removed = sweep_partials([incoming, tts, gone])
    assert sorted((p.name, size) for p, size in removed) == [
        ("4f2a.part", 1234), ("abc.wav.1f2e3d4c.part", 10)]
    assert sorted(os.listdir(incoming)) == ["kept.part.d", "link.part"]
    assert os.listdir(tts) == ["abc.wav"]
