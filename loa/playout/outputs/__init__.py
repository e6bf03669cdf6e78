"""Output family: how a zone stream is framed on the wire.

``ogg`` (Ogg/Opus over HTTP), ``mp3`` (MP3 over HTTP) and ``ws`` (Loa's native protocol over
WebSocket). Each format frames an encoded packet once per zone stream; the bytes are shared by
every listener of that stream.
"""

from __future__ import annotations

from loa.playout.outputs.base import FORMATS, StreamFormat, create_format

__all__ = ["FORMATS", "StreamFormat", "create_format"]
