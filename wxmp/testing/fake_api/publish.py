"""Fake drafts and publishing: ``draft/*`` and ``freepublish/*`` with their state.

Drafts live in ``fake.state["drafts"]`` (media_id -> articles), publishing jobs in
``fake.state["publish_jobs"]`` and published articles in ``fake.state["published"]`` (article_id ->
articles). A job reports ``publish_status`` 1 (publishing) for ``polls`` calls of freepublish/get, then
its outcome (:func:`set_publish_outcome`; default 0, published); :func:`publish_event_xml` renders
the ``PUBLISHJOBFINISH`` push WeChat sends at the end, for a test to deliver to a callback.

WeChat's rules (developers.weixin.qq.com/doc/offiaccount/Draft_Box/Add_draft.html, .../Publish/):
1 to 8 articles (else 40035); unknown ``article_type`` -> 40035; a missing title or content ->
40035; title over 32 characters -> 45003 (?); author over 16 -> 45110 (?); content of 20,000
characters or 1 MB -> 45002; a news article's ``thumb_media_id`` (and a newspic's images, 1 to 20)
must be permanent images -> 40007; ``<img>`` whose ``src`` WeChat did not host (``media/uploadimg``
or permanent material) are dropped from the content; an empty digest becomes the body's first 54
characters. Unknown draft media_id -> 40007; draft/update index out of range -> 40035; batchget
count 1..20 -> 40035; :func:`revoke_publishing` makes every freepublish path answer 48001; unknown
publish_id -> 40035 (?); unknown article_id -> 53600. Mass ``mpnews`` takes a draft's media_id.
"""

from __future__ import annotations

import html
import re
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, next_id, state

__all__ = [
    "drafts",
    "publish_event_xml",
    "publish_jobs",
    "published",
    "published_article",
    "revoke_publishing",
    "set_publish_outcome",
]

_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_SRC = re.compile(r"""\bsrc\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")


def drafts(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """media_id -> {"news_item": [articles as stored], "update_time"}."""
    return state(fake, "drafts", dict)


def publish_jobs(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """publish_id -> {"media_id", "polls", "status", "fail_idx", "article_id"}."""
    return state(fake, "publish_jobs", dict)


def published(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """article_id -> {"news_item": [...], "update_time"}."""
    return state(fake, "published", dict)


def published_article(fake: FakeWeChat, article_id: Any) -> dict[str, Any] | None:
    """The published item ``article_id`` if it exists and is not wholly deleted."""
    item = published(fake).get(str(article_id))
    if item is None or all(a["is_deleted"] for a in item["news_item"]):
        return None
    return item


def set_publish_outcome(
    fake: FakeWeChat, status: int = 0, fail_idx: tuple[int, ...] = (), polls: int = 1
) -> None:
    """How the next submitted jobs end: ``status`` (0 published, 2-4 refused) after ``polls`` polls."""
    with LOCK:
        fake.state["publish_outcome"] = {"status": status, "fail_idx": list(fail_idx), "polls": polls}


def revoke_publishing(fake: FakeWeChat, revoked: bool = True) -> None:
    """The account loses (or regains) the right to publish through the API: freepublish answers 48001."""
    with LOCK:
        fake.state["publish_revoked"] = revoked


def _hosted(fake: FakeWeChat) -> set[str]:
    from .media import article_images, materials

    urls = set(article_images(fake))
    urls.update(m["url"] for m in materials(fake).values() if m.get("url"))
    return urls


def _permanent_image(fake: FakeWeChat, media_id: Any) -> None:
    from .media import materials

    item = materials(fake).get(media_id) if isinstance(media_id, str) else None
    if item is None or item["type"] not in ("image", "thumb"):
        raise WeChatFault(40007, "invalid media_id")


def _article(fake: FakeWeChat, item: Any) -> dict[str, Any]:
    """One article checked as WeChat checks it, stored as draft/get returns it."""
    if not isinstance(item, dict):
        raise WeChatFault(47001, "data format error")
    kind = item.get("article_type", "news")
    if kind not in ("news", "newspic"):
        raise WeChatFault(40035, "invalid args, article_type")
    title, content = item.get("title"), item.get("content")
    if not isinstance(title, str) or not title or not isinstance(content, str) or not content:
        raise WeChatFault(40035, "invalid args, title and content are required")
    if len(title) > 32:
        raise WeChatFault(45003, "title size out of limit")
    if len(str(item.get("author", ""))) > 16:
        raise WeChatFault(45110, "author size out of limit")
    if len(content) >= 20_000 or len(content.encode("utf-8")) >= 1024 * 1024:
        raise WeChatFault(45002, "content size out of limit")
    stored = dict(item)
    stored["article_type"] = kind
    if kind == "news":
        _permanent_image(fake, item.get("thumb_media_id"))
        hosted = _hosted(fake)

        def keep(match: re.Match[str]) -> str:
            src = _SRC.search(match.group(0))
            return match.group(0) if src and html.unescape(src.group(1)) in hosted else ""

        stored["content"] = _IMG.sub(keep, content)  # WeChat filters images it does not host
        stored["thumb_url"] = f"http://mmbiz.qpic.cn/mmbiz_jpg/{item['thumb_media_id']}/0"
    else:
        info = item.get("image_info")
        images = info.get("image_list") if isinstance(info, dict) else None
        if not isinstance(images, list) or not 1 <= len(images) <= 20:
            raise WeChatFault(40035, "invalid args, image_info.image_list")
        for image in images:
            _permanent_image(fake, image.get("image_media_id") if isinstance(image, dict) else None)
    if not stored.get("digest") and kind == "news":
        stored["digest"] = html.unescape(_TAGS.sub("", stored["content"])).strip()[:54]
    stored.setdefault("author", "")
    stored.setdefault("content_source_url", "")
    stored.setdefault("need_open_comment", 0)
    stored.setdefault("only_fans_can_comment", 0)
    return stored


def _draft(fake: FakeWeChat, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    media_id = data.get("media_id")
    item = drafts(fake).get(media_id) if isinstance(media_id, str) else None
    if item is None:
        raise WeChatFault(40007, "invalid media_id")
    return str(media_id), item


def _listing(req: FakeRequest, entries: list[tuple[str, dict[str, Any]]], id_key: str) -> dict[str, Any]:
    """One offset/count page of ``entries`` (newest first), shaped as the two batchget endpoints answer."""
    data = req.json
    try:
        offset, count = int(data.get("offset", 0)), int(data.get("count", 0))
    except (TypeError, ValueError):
        raise WeChatFault(40035, "invalid args, offset/count")
    if offset < 0 or not 1 <= count <= 20:
        raise WeChatFault(40035, "invalid args, count must be 1 to 20")
    items = []
    for key, entry in entries[offset : offset + count]:
        news = entry["news_item"]
        if data.get("no_content"):
            news = [{k: v for k, v in a.items() if k != "content"} for a in news]
        items.append({id_key: key, "content": {"news_item": news}, "update_time": entry["update_time"]})
    return {"total_count": len(entries), "item_count": len(items), "item": items}


# -- drafts ---------------------------------------------------------------------------------------


@endpoint("POST", "/cgi-bin/draft/add")
def _add(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    articles = data.get("articles")
    if not isinstance(articles, list) or not 1 <= len(articles) <= 8:
        raise WeChatFault(40035, "invalid args, articles must hold 1 to 8 articles")
    stored = [_article(fake, a) for a in articles]
    media_id = f"D{next_id(fake, 'draft'):08d}_draft"
    with LOCK:
        drafts(fake)[media_id] = {"news_item": stored, "update_time": int(fake.clock())}
    return {"media_id": media_id}


@endpoint("POST", "/cgi-bin/draft/get")
def _get(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    media_id, item = _draft(fake, req.json)
    news = [
        {**a, "url": f"http://mp.weixin.qq.com/s?__biz=FAKE&tempkey={media_id}_{i}"}
        for i, a in enumerate(item["news_item"])
    ]
    return {"news_item": news}


@endpoint("POST", "/cgi-bin/draft/update")
def _update(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    _, item = _draft(fake, data)
    index = data.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(item["news_item"]):
        raise WeChatFault(40035, "invalid args, index")
    article = _article(fake, data.get("articles"))
    with LOCK:
        item["news_item"][index] = article
        item["update_time"] = int(fake.clock())
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/draft/delete")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        media_id, _ = _draft(fake, req.json)
        del drafts(fake)[media_id]
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/cgi-bin/draft/count")
def _count(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    return {"total_count": len(drafts(fake))}


@endpoint("POST", "/cgi-bin/draft/batchget")
def _batchget(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        newest = sorted(drafts(fake).items(), key=lambda kv: kv[0], reverse=True)
    return _listing(req, newest, "media_id")


@endpoint("POST", "/cgi-bin/draft/switch")
def _switch(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        if req.args.get("checkonly") != "1":
            fake.state["draft_box_open"] = True
        is_open = 1 if fake.state.get("draft_box_open", True) else 0
    return {"errcode": 0, "errmsg": "ok", "is_open": is_open}


# -- publishing -----------------------------------------------------------------------------------


def _allowed(fake: FakeWeChat) -> None:
    if fake.state.get("publish_revoked"):
        raise WeChatFault(48001, "api unauthorized")


@endpoint("POST", "/cgi-bin/freepublish/submit")
def _submit(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _allowed(fake)
    media_id, _ = _draft(fake, req.json)
    outcome = fake.state.get("publish_outcome", {"status": 0, "fail_idx": [], "polls": 1})
    publish_id = str(next_id(fake, "publish", 2_247_483_001))
    with LOCK:
        publish_jobs(fake)[publish_id] = {"media_id": media_id, "polls": int(outcome["polls"]), **outcome}
    return {
        "errcode": 0,
        "errmsg": "ok",
        "publish_id": publish_id,
        "msg_data_id": str(next_id(fake, "msg_data", 2_247_500_001)),
    }


def _finish(fake: FakeWeChat, publish_id: str, job: dict[str, Any]) -> None:
    """Turn a finished successful job into a published item (once)."""
    if job.get("article_id") or job["status"] != 0:
        return
    articles = drafts(fake).get(job["media_id"], {}).get("news_item", [])
    article_id = f"A{publish_id}_{next_id(fake, 'article'):06d}"
    news = [
        {**a, "url": f"http://mp.weixin.qq.com/s?__biz=FAKE&mid={publish_id}&idx={i}", "is_deleted": False}
        for i, a in enumerate(articles, start=1)
    ]
    published(fake)[article_id] = {"news_item": news, "update_time": int(fake.clock())}
    job["article_id"] = article_id


def _job_state(publish_id: str, job: dict[str, Any], fake: FakeWeChat) -> dict[str, Any]:
    result: dict[str, Any] = {"publish_id": publish_id, "publish_status": job["status"]}
    if job["status"] == 0:
        news = published(fake)[job["article_id"]]["news_item"]
        result["article_id"] = job["article_id"]
        result["article_detail"] = {
            "count": len(news),
            "item": [{"idx": i, "article_url": a["url"]} for i, a in enumerate(news, start=1)],
        }
    if job["fail_idx"]:
        result["fail_idx"] = list(job["fail_idx"])
    return result


@endpoint("POST", "/cgi-bin/freepublish/get")
def _publish_get(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _allowed(fake)
    publish_id = str(req.json.get("publish_id", ""))
    with LOCK:
        job = publish_jobs(fake).get(publish_id)
        if job is None:
            raise WeChatFault(40035, "invalid args, publish_id")
        if job["polls"] > 0:
            job["polls"] -= 1
            return {"publish_id": publish_id, "publish_status": 1}
        _finish(fake, publish_id, job)
        return _job_state(publish_id, job, fake)


def publish_event_xml(
    fake: FakeWeChat, publish_id: str, *, to_user: str = "gh_fake", openid: str = "oFAKEPUBLISHER"
) -> str:
    """The ``PUBLISHJOBFINISH`` push for a finished job, as WeChat sends it to the callback."""
    with LOCK:
        job = publish_jobs(fake)[publish_id]
        job["polls"] = 0
        _finish(fake, publish_id, job)
        result = _job_state(publish_id, job, fake)
    parts = [
        f"<publish_id>{publish_id}</publish_id>",
        f"<publish_status>{result['publish_status']}</publish_status>",
    ]
    if "article_id" in result:
        items = "".join(
            f"<item><idx>{i['idx']}</idx><article_url><![CDATA[{i['article_url']}]]></article_url></item>"
            for i in result["article_detail"]["item"]
        )
        parts.append(f"<article_id><![CDATA[{result['article_id']}]]></article_id>")
        parts.append(
            f"<article_detail><count>{result['article_detail']['count']}</count>{items}</article_detail>"
        )
    parts.extend(f"<fail_idx>{i}</fail_idx>" for i in result.get("fail_idx", []))
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(fake.clock())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[PUBLISHJOBFINISH]]></Event><PublishEventInfo>{''.join(parts)}</PublishEventInfo></xml>"
    )


def _published_item(fake: FakeWeChat, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    article_id = str(data.get("article_id", ""))
    item = published(fake).get(article_id)
    if item is None:
        raise WeChatFault(53600, "article_id is invalid")
    return article_id, item


@endpoint("POST", "/cgi-bin/freepublish/getarticle")
def _getarticle(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _allowed(fake)
    _, item = _published_item(fake, req.json)
    return {"news_item": [dict(a) for a in item["news_item"]]}


@endpoint("POST", "/cgi-bin/freepublish/delete")
def _publish_delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _allowed(fake)
    data = req.json
    with LOCK:
        _, item = _published_item(fake, data)
        index = data.get("index", 0) or 0
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= len(item["news_item"]):
            raise WeChatFault(40035, "invalid args, index")
        for i, article in enumerate(item["news_item"], start=1):
            if index in (0, i):
                article["is_deleted"] = True
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/cgi-bin/freepublish/batchget")
def _publish_batchget(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    _allowed(fake)
    with LOCK:
        live = [(k, v) for k, v in published(fake).items() if published_article(fake, k) is not None]
    return _listing(req, live[::-1], "article_id")
