"""The media library: uploads judged by decoding, stored by content hash and measured for
loudness; list, show, delete.

Scope: an item belongs to its uploader's scope (``zone``; none for a caller of the whole
station's). It is listed and shown to those whose scope holds its zone; the station's items
(no zone) to everyone. Deleting one needs its zone in scope (the station's: the whole tree)."""

from __future__ import annotations

from aiohttp import web

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

routes = web.RouteTableDef()


@routes.post("/api/v1/media")
@audited("media.add")
async def add_media(request: web.Request) -> Changed:
    """Multipart (OPERATE): a ``file`` part, optional ``title`` and ``tags``
    (comma-separated). 201 with the new item, 200 when the same audio was there already;
    415 for another body, 413 over ``max_upload_mb``, 400 for a file that is not audio."""
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
    return Changed(json_response({"media": item.describe(), "created": created},
                                     status=201 if created else 200),
                   item.id, {"filename": filename, "created": created})


@routes.get("/api/v1/media")
async def list_media(request: web.Request) -> web.Response:
    """``GET media``: the library items of the caller's scope and the station's, oldest
    first."""
    scope = scope_of(request)
    return json_response({"media": [m.describe() for m in server_of(request).media.list()
                                    if visible_media(scope, m)]})


def visible_media(scope: Scope, item: MediaItem) -> bool:
    """The station's items are everyone's; a zone's, those of the scopes that hold it."""
    return item.zone is None or scope.contains(item.zone)


@routes.get("/api/v1/media/{id}")
async def get_media(request: web.Request) -> web.Response:
    """``GET media/{id}``: one item; 404 if unknown."""
    item = server_of(request).media.get(request.match_info["id"])
    if item is None:
        raise ApiError(404, N_("no media item {id!r}"), id=request.match_info["id"])
    if item.zone is not None:
        scoped(request, item.zone)
    return json_response({"media": item.describe()})


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
