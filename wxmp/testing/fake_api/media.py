"""Fake media and material: temporary upload/get, uploadimg, and permanent material.

Temporary media live in ``fake.state["media"]`` for 3 days of ``fake.clock``; permanent material
in ``fake.state["materials"]``. Rules: bad ``type`` -> 40004; no multipart ``media`` field ->
41005; a raw non-ASCII filename (WeChat wants it percent-encoded) or a wrong extension -> 40005 (temporary:
image jpg/png/gif, voice amr/mp3; permanent: image also bmp, voice mp3/wma/wav/amr);
too large -> 40006 (sizes of WeChat's 新增临时素材 page,
developers.weixin.qq.com/doc/offiaccount/Asset_Management/New_temporary_materials.html); unknown or expired
media_id -> 40007; a
permanent video without its ``description`` form field (JSON title/introduction) -> 40035.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, next_id, state

__all__ = ["article_images", "materials", "media"]

MB = 1024 * 1024
LIFETIME = 3 * 24 * 3600
# Formats per kind, from the temporary-media and permanent-material pages
# (developers.weixin.qq.com/doc/offiaccount/Asset_Management/New_temporary_materials.html and
# .../Adding_Permanent_Assets.html): temporary images PNG/JPEG/JPG/GIF and voice AMR/MP3;
# permanent images add BMP, permanent voice is MP3/WMA/WAV/AMR. Speex is never accepted.
_RULES: dict[str, tuple[tuple[str, ...], int]] = {
    "image": (("jpg", "jpeg", "png", "gif"), 10 * MB),
    "voice": (("amr", "mp3"), 2 * MB),
    "video": (("mp4",), 10 * MB),
    "thumb": (("jpg", "jpeg"), 64 * 1024),
}
_PERMANENT_RULES: dict[str, tuple[tuple[str, ...], int]] = {
    **_RULES,
    "image": (("bmp", "png", "jpeg", "jpg", "gif"), 10 * MB),
    "voice": (("mp3", "wma", "wav", "amr"), 2 * MB),
}
_IMG_RULE = (("jpg", "jpeg", "png"), 1 * MB)


def media(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """Temporary media: media_id -> {"type", "content", "filename", "content_type", "created_at"}."""
    return state(fake, "media", dict)


def article_images(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """Images hosted by ``media/uploadimg`` for article bodies: url -> {"content", "filename", ...}."""
    return state(fake, "article_images", dict)


def materials(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """Permanent material: media_id -> {"type", "content", "filename", ... "title", "introduction"}."""
    return state(fake, "materials", dict)


def _kind(req: FakeRequest) -> str:
    kind = req.args.get("type", "")
    if kind not in _RULES:
        raise WeChatFault(40004, "invalid media type")
    return kind


def _file(req: FakeRequest, rule: tuple[tuple[str, ...], int]) -> dict[str, Any]:
    upload = req.files.get("media")
    if upload is None:
        raise WeChatFault(41005, "media data missing")
    filename = upload.filename or ""
    # A raw UTF-8 filename fails on WeChat; percent-encoded works (WeRoBot #292).
    if not filename.isascii() or filename.rsplit(".", 1)[-1].lower() not in rule[0]:
        raise WeChatFault(40005, "invalid file type")
    content = upload.read()
    if not content or len(content) > rule[1]:
        raise WeChatFault(40006, "invalid file size")
    return {"content": content, "filename": filename, "content_type": upload.mimetype or ""}


def _download(item: dict[str, Any]) -> Response:
    return Response(
        item["content"],
        content_type=item["content_type"] or "application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{item["filename"]}"'},
    )


@endpoint("POST", "/cgi-bin/media/upload")
def _upload(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    kind = _kind(req)
    item = _file(req, _RULES[kind])
    media_id = f"M{next_id(fake, 'media'):08d}_{kind}"
    now = int(fake.clock())
    with LOCK:
        media(fake)[media_id] = {**item, "type": kind, "created_at": now}
    key = "thumb_media_id" if kind == "thumb" else "media_id"  # thumbs answer thumb_media_id (?)
    return {"type": kind, key: media_id, "created_at": now}


@endpoint("GET", "/cgi-bin/media/get")
def _get(fake: FakeWeChat, req: FakeRequest) -> Any:
    item = media(fake).get(req.args.get("media_id", ""))
    if item is None or fake.clock() - item["created_at"] > LIFETIME:
        raise WeChatFault(40007, "invalid media_id")
    if item["type"] == "video":
        return {"video_url": f"{fake.url}/fake-media/{req.args['media_id']}.mp4"}
    return _download(item)


@endpoint("POST", "/cgi-bin/media/uploadimg")
def _upload_img(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    item = _file(req, _IMG_RULE)
    n = next_id(fake, "media")
    ext = item["filename"].rsplit(".", 1)[-1].lower()
    url = f"http://mmbiz.qpic.cn/mmbiz_{ext}/fake{n:08d}/0"
    with LOCK:
        article_images(fake)[url] = item
    return {"url": url}


@endpoint("POST", "/cgi-bin/material/add_material")
def _add(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    kind = _kind(req)
    item = _file(req, _PERMANENT_RULES[kind])
    item["type"] = kind
    if kind == "video":
        try:
            description = json.loads(req.form.get("description") or req.args.get("description") or "")
        except ValueError:
            description = None
        if not isinstance(description, dict) or not description.get("title"):
            raise WeChatFault(40035, "invalid args, video needs description {title, introduction}")
        item["title"] = description["title"]
        item["introduction"] = description.get("introduction", "")
    media_id = f"P{next_id(fake, 'material'):08d}_{kind}"
    item["update_time"] = int(fake.clock())
    result: dict[str, Any] = {"media_id": media_id}
    if kind == "image":
        item["url"] = result["url"] = f"http://mmbiz.qpic.cn/mmbiz_jpg/{media_id}/0"
    with LOCK:
        materials(fake)[media_id] = item
    return result


def _material(fake: FakeWeChat, req: FakeRequest) -> tuple[str, dict[str, Any]]:
    data = req.json
    req.require(data, "media_id")
    item = materials(fake).get(data["media_id"])
    if item is None:
        raise WeChatFault(40007, "invalid media_id")
    return data["media_id"], item


@endpoint("POST", "/cgi-bin/material/get_material")
def _get_material(fake: FakeWeChat, req: FakeRequest) -> Any:
    media_id, item = _material(fake, req)
    if item["type"] == "video":
        return {
            "title": item["title"],
            "description": item["introduction"],
            "down_url": f"{fake.url}/fake-material/{media_id}.mp4",
        }
    if item["type"] == "news":
        return {"news_item": item["news_item"]}
    return _download(item)


@endpoint("POST", "/cgi-bin/material/del_material")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        media_id, _ = _material(fake, req)
        del materials(fake)[media_id]
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/cgi-bin/material/get_materialcount")
def _count(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        kinds = [m["type"] for m in materials(fake).values()]
    return {f"{k}_count": kinds.count(k) for k in ("voice", "video", "image", "news")}


@endpoint("POST", "/cgi-bin/material/batchget_material")
def _batchget(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    kind = data.get("type")
    if kind not in ("image", "voice", "video", "news"):
        raise WeChatFault(40004, "invalid media type")
    try:
        offset, count = int(data.get("offset", 0)), int(data.get("count", 0))
    except (TypeError, ValueError):
        raise WeChatFault(40035, "invalid args, offset/count")
    if offset < 0 or not 1 <= count <= 20:
        raise WeChatFault(40035, "invalid args, count must be 1 to 20")
    with LOCK:
        matching = [(i, m) for i, m in materials(fake).items() if m["type"] == kind]
    page = matching[offset : offset + count]
    items = [
        {"media_id": i, "name": m["filename"], "update_time": m["update_time"], "url": m.get("url", "")}
        for i, m in page
    ]
    return {"total_count": len(matching), "item_count": len(items), "item": items}
