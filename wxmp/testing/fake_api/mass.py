"""Fake mass sending: sendall, send, preview, delete, get, and media/uploadvideo.

Jobs are kept in ``fake.state["mass_jobs"]`` (msg_id -> the body and its status). Rules: unknown
msgtype -> 40008; a missing payload field -> 40035; ``send`` with fewer than 2 or more than
10,000 openids -> 40130; unknown openid -> 40003; sendall without is_to_all or a known tag ->
40035 / 45159; a clientmsgid over 64 bytes -> 45067, reused within a minute (of ``fake.clock``)
-> 45066, later -> 45065 (with the earlier msg_id); images need a non-empty ``images.media_ids`` (or the older
``image.media_id``); ``mpnews`` takes a draft's media_id (40007 otherwise);
preview without touser/towxname -> 40035; unknown msg_id -> 40035.
"""

from __future__ import annotations

from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, message_payload, next_id, state

__all__ = ["mass_jobs"]

_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "image": ("media_id",),
    "voice": ("media_id",),
    "mpnews": ("media_id",),
    "mpvideo": ("media_id",),
    "wxcard": ("card_id",),
}


#: A clientmsgid retried sooner than this after its job answers 45066 (later: 45065 and the job's id).
RETRY_INTERVAL = 60.0


def mass_jobs(fake: FakeWeChat) -> dict[int, dict[str, Any]]:
    """Submitted jobs: msg_id -> {"body", "status", "endpoint"}."""
    return state(fake, "mass_jobs", dict)


def _message(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "msgtype")
    if data["msgtype"] == "image" and "images" in data:
        # The current form: {"images": {"media_ids": [...], "recommend", "need_open_comment",
        # "only_fans_can_comment"}}; the older {"image": {"media_id"}} is checked below.
        images = data["images"]
        ids = images.get("media_ids") if isinstance(images, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise WeChatFault(40035, "invalid args, images.media_ids")
        return data
    payload = message_payload(req, data, _FIELDS)
    if data["msgtype"] == "mpnews":
        from .publish import drafts

        if payload["media_id"] not in drafts(fake):  # an article is mass-sent from a draft
            raise WeChatFault(40007, "invalid media_id")
    return data


def _submit(fake: FakeWeChat, data: dict[str, Any], where: str) -> dict[str, Any]:
    clientmsgid = data.get("clientmsgid")
    now = fake.clock()
    with LOCK:
        jobs = mass_jobs(fake)
        if clientmsgid is not None:
            if len(str(clientmsgid).encode("utf-8")) > 64:
                raise WeChatFault(45067, "clientmsgid size out of limit")
            for msg_id, job in jobs.items():
                if job["body"].get("clientmsgid") == clientmsgid:
                    if now - job["at"] < RETRY_INTERVAL:
                        raise WeChatFault(45066, "same clientmsgid retry too fast")
                    raise WeChatFault(45065, "clientmsgid exist", msg_id=msg_id)
        msg_id = next_id(fake, "mass", 1_000_000_001)
        jobs[msg_id] = {"body": data, "status": "SEND_SUCCESS", "endpoint": where, "at": now}
    result: dict[str, Any] = {"errcode": 0, "errmsg": "send job submission success", "msg_id": msg_id}
    if data["msgtype"] == "mpnews":
        result["msg_data_id"] = msg_id + 1_000_000_000
    return result


@endpoint("POST", "/cgi-bin/message/mass/sendall")
def _sendall(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = _message(fake, req)
    rule = data.get("filter")
    if not isinstance(rule, dict):
        raise WeChatFault(40035, "invalid args, missing filter")
    if not rule.get("is_to_all"):
        if rule.get("tag_id") in (None, ""):
            raise WeChatFault(40035, "invalid args, missing tag_id")
        from .tag import tags

        if int(rule["tag_id"]) not in tags(fake) and int(rule["tag_id"]) not in (0, 1, 2):
            raise WeChatFault(45159, "invalid tag id")
    return _submit(fake, data, "sendall")


@endpoint("POST", "/cgi-bin/message/mass/send")
def _send(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = _message(fake, req)
    touser = data.get("touser")
    if not isinstance(touser, list) or not 2 <= len(touser) <= 10_000:
        raise WeChatFault(40130, "invalid openid list size, at least two openid")
    for openid in touser:
        follower(fake, openid)
    return _submit(fake, data, "send")


@endpoint("POST", "/cgi-bin/message/mass/preview")
def _preview(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = _message(fake, req)
    if data.get("touser"):
        follower(fake, data["touser"])
    elif not data.get("towxname"):
        raise WeChatFault(40035, "invalid args, missing touser or towxname")
    with LOCK:
        state(fake, "mass_previews", list).append(data)
    return {"errcode": 0, "errmsg": "preview success", "msg_id": next_id(fake, "mass", 1_000_000_001)}


def _job(fake: FakeWeChat, req: FakeRequest) -> tuple[int, dict[str, Any]]:
    data = req.json
    try:
        msg_id = int(data.get("msg_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WeChatFault(40035, "invalid args, missing msg_id")
    job = mass_jobs(fake).get(msg_id)
    if job is None:
        raise WeChatFault(40035, "invalid args, no such msg_id")
    return msg_id, job


@endpoint("POST", "/cgi-bin/message/mass/delete")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        _, job = _job(fake, req)
        job["status"] = "DELETE"
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/message/mass/get")
def _status(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    msg_id, job = _job(fake, req)
    return {"msg_id": msg_id, "msg_status": job["status"]}


@endpoint("POST", "/cgi-bin/media/uploadvideo")
def _upload_video(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "media_id")
    from .media import media

    item = media(fake).get(data["media_id"])
    if item is None or item["type"] != "video":
        raise WeChatFault(40007, "invalid media_id")
    new_id = f"MV{next_id(fake, 'media'):08d}"
    with LOCK:
        media(fake)[new_id] = {
            **item,
            "title": data.get("title", ""),
            "description": data.get("description", ""),
        }
    return {"type": "video", "media_id": new_id, "created_at": int(fake.clock())}
