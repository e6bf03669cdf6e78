"""The media library: uploads judged by decoding, stored by content hash and measured for
loudness; list, show, listen to (the stored file, with Range), delete.

Scope: an item belongs to its uploader's scope (``zone``; none for a caller of the whole
station's); the same recording uploaded in two zones is two items (one file on the disk). It
is listed, shown and served to those whose scope holds its zone; the station's items (no
zone) to everyone. Deleting one needs its zone in scope (the station's: the whole tree)."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import hdrs, web

from loa.api.audit import Changed, audited
from loa.api.resource import (
    ApiError,
    actor,
    json_response,
    principal_of,
    require,
    scope_of,
    scoped,
    scoped_all,
    server_of,
)
from loa.api.uploads import read_multipart
from loa.control.auth import Right, Scope
from loa.control.media import MediaItem
from loa.core.i18n import N_, Message

SNIFF_BYTES = 16  # enough for every signature audio_type knows

routes = web.RouteTableDef()


@routes.post("/api/v1/media")
@audited("media.add")
async def add_media(request: web.Request) -> Changed:
    """Multipart (OPERATE): a ``file`` part, optional ``title`` and ``tags``
    (comma-separated). 201 with the new item, 200 with the item already there when the
    same audio was uploaded before in the uploader's zone (another zone's upload of it is
    theirs: this one gets an item of its own, ``MediaLibrary.add_file``); 415 for another
    body, 413 over ``max_upload_mb``, 400 for a file that is not audio."""
    require(request, Right.OPERATE)
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, N_('upload as multipart/form-data with a "file" part'))
    s = server_of(request)
    fields, files = await read_multipart(request, s.config.max_upload_mb << 20,
                                         s.media.incoming)
    upload = files.get("file")
    if upload is None:
        raise ApiError(400, N_('multipart needs a "file" part'))
    filename = upload.filename
    zone = principal_of(request).scope
    if zone is not None:
        scoped(request, zone)  # where: the uploader's zone
    item, created = await s.media.add_file(
        upload.path, upload.sha256, filename, actor(request),
        fields.get("title", ""), fields.get("tags", "").split(","), zone)
    return Changed(json_response({"media": describe(item), "created": created},
                                     status=201 if created else 200),
                   item.id, {"filename": filename, "created": created})


@routes.get("/api/v1/media")
async def list_media(request: web.Request) -> web.Response:
    """``GET media``: the library items of the caller's scope and the station's, oldest
    first (each as ``describe``)."""
    scope = scope_of(request)
    return json_response({"media": [describe(m) for m in server_of(request).media.list()
                                    if visible_media(scope, m)]})


def describe(item: MediaItem) -> dict[str, Any]:
    """An item as the API shows it: ``MediaItem.describe`` and ``audio_url``, the path (on
    this server) of its audio, ``GET media/{id}/audio``."""
    return {**item.describe(), "audio_url": f"/api/v1/media/{quote(item.id)}/audio"}


def visible_media(scope: Scope, item: MediaItem) -> bool:
    """The station's items are everyone's; a zone's, those of the scopes that hold it."""
    return item.zone is None or scope.contains(item.zone)


@routes.get("/api/v1/media/{id}")
async def get_media(request: web.Request) -> web.Response:
    """``GET media/{id}``: one item (``describe``); 404 if unknown, 403 (ScopeError) if its
    zone is outside the caller's scope."""
    return json_response({"media": describe(_readable_item(request))})


@routes.get("/api/v1/media/{id}/audio")
async def get_media_audio(request: web.Request) -> web.StreamResponse:
    """``GET media/{id}/audio`` (and ``HEAD``): the stored file as it was uploaded, for a
    preview in the browser: scoped as ``GET media/{id}`` (404 unknown, 403 another
    commune's). ``Content-Type`` from the file's first bytes (MP3, WAV, Ogg, FLAC, MP4/AAC…;
    the name's extension only when they say nothing: the file is stored without one),
    ``Accept-Ranges: bytes``: a ``Range`` request is answered 206 with that part (416 when
    it lies past the end), ETag and Last-Modified for conditional requests, the body sent
    with sendfile where the transport has it. 404 (JSON) if the file is gone from the
    disk."""
    item = _readable_item(request)
    path = Path(item.path)
    try:  # a disk read (and mimetypes' first reading of its tables): beside the loop
        content_type = await asyncio.to_thread(_file_type, path, item.filename)
    except FileNotFoundError:
        raise ApiError(404, N_("the audio of {title!r} is missing from the disk"),
                       title=item.title) from None
    # aiohttp's FileResponse stat()s, opens, reads and closes the file in the executor
    # (aiohttp 3.14, web_fileresponse.py): none of it runs on the loop
    return web.FileResponse(path, headers={
        hdrs.CONTENT_TYPE: content_type,
        hdrs.CONTENT_DISPOSITION: f"inline; filename*=UTF-8''{quote(item.filename)}",
        # the id is the content's hash, so a URL's bytes never change; private: scoped
        hdrs.CACHE_CONTROL: "private, max-age=86400",
    })



def _file_type(path: Path, filename: str) -> str:
    """Blocking: ``audio_type`` of the file's first bytes (FileNotFoundError if it is
    gone)."""
    with path.open("rb") as f:
        return audio_type(f.read(SNIFF_BYTES), filename)


def audio_type(head: bytes, filename: str) -> str:
    """The Content-Type of audio whose first bytes are ``head``: by the format's signature
    (``audio/mpeg``, ``audio/aac`` for ADTS, ``audio/wav``, ``audio/ogg``, ``audio/flac``,
    ``audio/mp4``, ``audio/aiff``, ``audio/webm``, ``audio/x-ms-wma``, ``audio/amr``), else
    by ``filename``'s extension when that names an audio type, else
    ``application/octet-stream``."""
    if head.startswith(b"ID3"):
        return "audio/mpeg"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # an MPEG audio frame's sync word; layer bits 00 are ADTS (AAC), not MPEG audio
        return "audio/aac" if head[1] & 0x06 == 0 else "audio/mpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    for signature, content_type in ((b"OggS", "audio/ogg"), (b"fLaC", "audio/flac"),
                                    (b"\x1aE\xdf\xa3", "audio/webm"),
                                    (b"0&\xb2u\x8ef\xcf\x11", "audio/x-ms-wma"),
                                    (b"#!AMR", "audio/amr")):
        if head.startswith(signature):
            return content_type
    if head[4:8] == b"ftyp":
        return "audio/mp4"
    guessed = mimetypes.guess_type(filename)[0]
    return guessed if guessed and guessed.startswith("audio/") else "application/octet-stream"


def _readable_item(request: web.Request) -> MediaItem:
    """The item of the URL's ``{id}``, once the caller may read it: 404 (ApiError) if
    unknown; ScopeError (403) if its zone is outside the caller's scope."""
    item = server_of(request).media.get(request.match_info["id"])
    if item is None:
        raise ApiError(404, N_("no media item {id!r}"), id=request.match_info["id"])
    if item.zone is not None:
        scoped(request, item.zone)
    return item


@routes.delete("/api/v1/media/{id}")
@audited("media.delete")
async def delete_media(request: web.Request) -> Changed:
    """``DELETE media/{id}`` (OPERATE): 404 if unknown, 409 while it plays or is scheduled."""
    require(request, Right.OPERATE)
    s = server_of(request)
    item = s.media.get(request.match_info["id"])
    if item is None:
        raise ApiError(404, N_("no media item {id!r}"), id=request.match_info["id"])
    if item.zone is None:
        scoped_all(request, Message(N_("the station's media item {id!r}"), {"id": item.id}))
    else:
        scoped(request, item.zone)
    if s.media_in_use(item):
        raise ApiError(409, N_("{title!r} is playing or scheduled; release it first"),
                       title=item.title)
    await s.media.delete(item.id)
    return Changed(json_response({"deleted": item.id}), item.id)
