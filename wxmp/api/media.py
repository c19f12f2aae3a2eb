"""Media and material: ``wx.media`` (``/cgi-bin/media/*`` temporary, ``/cgi-bin/material/*`` permanent).

Uploads are multipart with the file in the field ``media``. ``file`` may be a path, bytes or a
binary file object; it is read into memory first (WeChat's limits are a few MB) so the one retry
on an invalid token sends the same bytes again. Non-ASCII filenames are percent-encoded: WeChat
refuses raw UTF-8 ones (WeChat's 新增临时素材 page,
developers.weixin.qq.com/doc/offiaccount/Asset_Management/New_temporary_materials.html).
"""

from __future__ import annotations

import functools
import json
import mimetypes
import os
from collections.abc import Generator
from typing import IO, Any
from urllib.parse import quote

from ..client import Blocking, Call, Plan
from ._base import ApiGroup, offset_items, plan, post, stream

__all__ = ["FileLike", "MediaAPI"]

FileLike = str | os.PathLike[str] | bytes | IO[bytes]

MEDIA_KINDS = ("image", "voice", "video", "thumb")
MATERIAL_KINDS = ("image", "voice", "video", "thumb")
LIST_KINDS = ("image", "voice", "video", "news")
PAGE_SIZE = 20  # batchget_material's maximum count

_DEFAULT_NAMES = {"image": "image.jpg", "voice": "voice.mp3", "video": "video.mp4", "thumb": "thumb.jpg"}


def _read(file: FileLike, filename: str | None, kind: str) -> tuple[str, bytes, str]:
    """(filename as sent, content, content type) for one upload."""
    if isinstance(file, bytes):
        content, name = file, None
    elif isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as fh:
            content = fh.read()
        name = os.path.basename(os.fspath(file))
    else:
        content = file.read()
        raw = getattr(file, "name", None)
        name = os.path.basename(raw) if isinstance(raw, str) else None
    name = filename or name or _DEFAULT_NAMES.get(kind, "file.bin")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if not name.isascii():
        name = quote(name, safe=".")
    return name, content, ctype


def _upload_steps(path: str, kind: str, file: FileLike, filename: str | None, **kw: Any) -> Plan[Any]:
    """The steps of one multipart upload (field ``media``), for a :func:`~wxmp.api._base.plan`.

    Reading the file blocks, so it is a :class:`~wxmp.client.Blocking` step (a thread on the
    async client); ``kw`` are the POST's other :class:`~wxmp.client.Call` keywords.
    """
    name, content, ctype = yield Blocking(functools.partial(_read, file, filename, kind))
    return (yield post(path, files={"media": (name, content, ctype)}, **kw))


def _check_kind(kind: str, allowed: tuple[str, ...]) -> None:
    if kind not in allowed:
        raise ValueError(f"media kind {kind!r}: one of {', '.join(allowed)}")


class MediaAPI(ApiGroup):
    """Temporary media (kept 3 days), article images, and permanent material."""

    @plan
    def _upload(self, path: str, kind: str, file: FileLike, filename: str | None, **kw: Any) -> Plan[Any]:
        return (yield from _upload_steps(path, kind, file, filename, **kw))

    # -- temporary media ------------------------------------------------------------------------

    def upload(self, kind: str, file: FileLike, *, filename: str | None = None) -> dict[str, Any]:
        """Upload temporary media (image, voice, video, thumb): ``POST /cgi-bin/media/upload``.

        Returns ``{"type", "media_id", "created_at"}`` (thumbs answer ``thumb_media_id``).
        """
        _check_kind(kind, MEDIA_KINDS)
        return self._upload("/cgi-bin/media/upload", kind, file, filename, params={"type": kind})

    def get(self, media_id: str) -> bytes | dict[str, Any]:
        """Download temporary media: ``GET /cgi-bin/media/get``.

        The file's bytes, or for a video the JSON dict ``{"video_url": ...}``.
        """
        return self.client.request("GET", "/cgi-bin/media/get", params={"media_id": media_id}, binary=True)

    def upload_image(self, file: FileLike, *, filename: str | None = None) -> str:
        """Host an image for article bodies and return its URL: ``POST /cgi-bin/media/uploadimg``."""
        return self._upload("/cgi-bin/media/uploadimg", "image", file, filename, then=_url)  # type: ignore[no-any-return]

    # -- permanent material ---------------------------------------------------------------------

    def add(
        self,
        kind: str,
        file: FileLike,
        title: str | None = None,
        introduction: str | None = None,
        *,
        filename: str | None = None,
    ) -> dict[str, Any]:
        """Add permanent material; ``{"media_id", "url"?}``: ``POST /cgi-bin/material/add_material``.

        A video needs ``title`` (and takes ``introduction``), sent as the ``description`` form field.
        """
        _check_kind(kind, MATERIAL_KINDS)
        data = None
        if kind == "video":
            if not title:
                raise ValueError("a permanent video needs a title")
            description = {"title": title, "introduction": introduction or ""}
            data = {"description": json.dumps(description, ensure_ascii=False)}
        params = {"type": kind}
        return self._upload("/cgi-bin/material/add_material", kind, file, filename, params=params, data=data)

    def get_material(self, media_id: str) -> bytes | dict[str, Any]:
        """Fetch permanent material: ``POST /cgi-bin/material/get_material``.

        Bytes for images, voice and thumbs; a dict for video (``down_url``) and news (``news_item``).
        """
        return self.client.request(
            "POST", "/cgi-bin/material/get_material", json={"media_id": media_id}, binary=True
        )

    def delete_material(self, media_id: str) -> dict[str, Any]:
        """Delete permanent material: ``POST /cgi-bin/material/del_material``."""
        return self.client.post("/cgi-bin/material/del_material", {"media_id": media_id})

    def count(self) -> dict[str, Any]:
        """Material counts by kind (``image_count``...): ``GET /cgi-bin/material/get_materialcount``."""
        return self.client.get("/cgi-bin/material/get_materialcount")

    def get_materials(self, kind: str, offset: int = 0, count: int = PAGE_SIZE) -> dict[str, Any]:
        """One page of permanent material: ``POST /cgi-bin/material/batchget_material``."""
        return self.client.call(_materials(kind, offset, count))

    @stream
    def iter_materials(self, kind: str) -> Generator[dict[str, Any] | Call, Any, None]:
        """Every permanent item of ``kind``, 20 per ``POST /cgi-bin/material/batchget_material``."""
        yield from offset_items(lambda offset: _materials(kind, offset, PAGE_SIZE))


def _materials(kind: str, offset: int, count: int) -> Call:
    _check_kind(kind, LIST_KINDS)
    if not 1 <= count <= PAGE_SIZE:
        raise ValueError(f"count: 1 to {PAGE_SIZE}")
    return post("/cgi-bin/material/batchget_material", {"type": kind, "offset": offset, "count": count})


def _url(result: dict[str, Any]) -> str:
    return str(result["url"])
