"""wx.draft and wx.freepublish over real HTTP against FakeWeChat: a draft is published, fetched and sent."""

from __future__ import annotations

from typing import Any

import pytest

from wxmp import ApiError, PublishUnauthorizedError, UnauthorizedApiError
from wxmp.api.draft import article
from wxmp.messages import PublishJobFinishEvent
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.fake_api.mass import mass_jobs
from wxmp.testing.fake_api.message import sent_messages
from wxmp.testing.fake_api.publish import (
    drafts,
    publish_event_xml,
    revoke_publishing,
    set_publish_outcome,
)
from wxmp.testing.fake_api.user import add_followers

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


@pytest.fixture
def cover(wx: Any) -> str:
    return str(wx.media.add("image", JPEG, filename="cover.jpg")["media_id"])


def _news(cover: str, **kw: Any) -> dict[str, Any]:
    return article(kw.pop("title", "标题"), kw.pop("content", "<p>正文</p>"), cover, **kw)


def test_draft_round_trip(wx: Any, fake_wechat: FakeWeChat, cover: str) -> None:
    hosted = wx.media.upload_image(JPEG, filename="in.jpg")
    body = f'<p>图</p><img src="{hosted}"><img src="https://evil.example/x.png">'
    media_id = wx.draft.add(
        [
            _news(cover, content=body, author="小编", need_open_comment=True, pic_crop_1_1="0_0_1_1"),
            _news(cover, title="第二篇", digest="摘要"),
        ]
    )
    (call,) = fake_wechat.calls("/cgi-bin/draft/add")
    sent = call.json["articles"][0]
    assert sent["article_type"] == "news" and sent["thumb_media_id"] == cover
    assert sent["need_open_comment"] == 1 and sent["only_fans_can_comment"] == 0
    assert "标题".encode() in call.body and b"\\u" not in call.body

    first, second = wx.draft.get(media_id)
    assert (
        hosted in first["content"] and "evil.example" not in first["content"]
    )  # WeChat drops foreign images
    assert first["digest"] == "图" and second["digest"] == "摘要"  # empty digest: the body's start
    assert wx.draft.count() == 1

    wx.draft.update(media_id, 1, _news(cover, title="改过"))
    assert wx.draft.get(media_id)[1]["title"] == "改过"
    with pytest.raises(ApiError) as info:
        wx.draft.update(media_id, 2, _news(cover))
    assert info.value.errcode == 40035

    page = wx.draft.batchget(no_content=True)
    assert page["total_count"] == 1 and "content" not in page["item"][0]["content"]["news_item"][0]
    wx.draft.delete(media_id)
    assert wx.draft.count() == 0
    with pytest.raises(ApiError) as info:
        wx.draft.get(media_id)
    assert info.value.errcode == 40007


def test_newspic_and_iteration(wx: Any, fake_wechat: FakeWeChat, cover: str) -> None:
    pic = article("图片消息", "纯文本", article_type="newspic", image_media_ids=[cover, cover])
    for _ in range(23):
        wx.draft.add(pic)
    assert len(list(wx.draft.iter())) == 23
    assert [c.json["offset"] for c in fake_wechat.calls("/cgi-bin/draft/batchget")] == [0, 20]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"title": "t", "content": "c"}, "thumb_media_id"),
        ({"title": "长" * 33, "content": "c", "thumb_media_id": "P1"}, "title is 33"),
        ({"title": "t", "content": "c", "thumb_media_id": "P1", "author": "a" * 17}, "author"),
        ({"title": "t", "content": "x" * 20_000, "thumb_media_id": "P1"}, "content"),
        ({"title": "t", "content": "c", "thumb_media_id": "P1", "pic_crop_1_1": "0_0_2_1"}, "pic_crop_1_1"),
        ({"article_type": "newspic", "title": "t", "content": "c"}, "image_list"),
        ({"article_type": "video", "title": "t", "content": "c"}, "article_type"),
        ({"title": "", "content": "c", "thumb_media_id": "P1"}, "title"),
    ],
)
def test_local_checks_name_the_field(
    wx: Any, fake_wechat: FakeWeChat, item: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        wx.draft.add(item)
    assert fake_wechat.count("/cgi-bin/draft/add") == 0


def test_draft_limits(wx: Any, fake_wechat: FakeWeChat, cover: str) -> None:
    with pytest.raises(ValueError, match="1 to 8"):
        wx.draft.add([_news(cover)] * 9)
    with pytest.raises(ValueError, match="1 to 8"):
        wx.draft.add([])
    # The fake refuses what WeChat refuses, whatever the client sends.
    for item, errcode in (
        ({**_news(cover), "thumb_media_id": "NOT_PERMANENT"}, 40007),
        ({**_news(cover), "title": "长" * 33}, 45003),
        ({**_news(cover), "author": "a" * 17}, 45110),
    ):
        with pytest.raises(ApiError) as info:
            wx.client.post("/cgi-bin/draft/add", {"articles": [item]})
        assert info.value.errcode == errcode


def test_switch(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.state["draft_box_open"] = False
    assert wx.draft.switch() is False
    assert fake_wechat.calls("/cgi-bin/draft/switch")[0].args["checkonly"] == "1"
    assert wx.draft.switch(check_only=False) is True
    assert "checkonly" not in fake_wechat.calls("/cgi-bin/draft/switch")[1].args


def test_publish_fetch_send_and_delete(wx: Any, fake_wechat: FakeWeChat, cover: str) -> None:
    fake_wechat.add_user("oREADER")
    media_id = wx.draft.add(_news(cover, title="发布"))
    set_publish_outcome(fake_wechat, polls=1)
    publish_id = wx.freepublish.submit(media_id)
    assert fake_wechat.calls("/cgi-bin/freepublish/submit")[0].json == {"media_id": media_id}
    assert wx.freepublish.get(publish_id)["publish_status"] == 1  # still publishing
    done = wx.freepublish.get(publish_id)
    assert done["publish_status"] == 0 and done["article_detail"]["count"] == 1
    article_id = done["article_id"]

    (published,) = wx.freepublish.get_article(article_id)
    assert (
        published["title"] == "发布" and published["url"] == done["article_detail"]["item"][0]["article_url"]
    )
    assert published["is_deleted"] is False
    assert [i["article_id"] for i in wx.freepublish.iter()] == [article_id]

    wx.message.send_mpnewsarticle("oREADER", article_id)
    assert sent_messages(fake_wechat, "oREADER")[0]["mpnewsarticle"] == {"article_id": article_id}

    wx.freepublish.delete(article_id)
    assert wx.freepublish.get_article(article_id)[0]["is_deleted"] is True
    assert wx.freepublish.batchget()["total_count"] == 0
    with pytest.raises(ApiError) as info:  # a deleted article cannot be sent
        wx.message.send_mpnewsarticle("oREADER", article_id)
    assert info.value.errcode == 40007
    with pytest.raises(ApiError) as info:
        wx.freepublish.get_article("NO_SUCH_ARTICLE")
    assert info.value.errcode == 53600


def test_failed_publish_reports_fail_idx(wx: Any, fake_wechat: FakeWeChat, cover: str) -> None:
    set_publish_outcome(fake_wechat, status=2, fail_idx=(1,), polls=0)
    publish_id = wx.freepublish.submit(wx.draft.add(_news(cover)))
    state = wx.freepublish.get(publish_id)
    assert state == {"publish_id": publish_id, "publish_status": 2, "fail_idx": [1]}


def test_publish_without_the_right_is_a_typed_error(wx: Any, fake_wechat: FakeWeChat, cover: str) -> None:
    media_id = wx.draft.add(_news(cover))
    revoke_publishing(fake_wechat)
    with pytest.raises(PublishUnauthorizedError) as info:
        wx.freepublish.submit(media_id)
    assert isinstance(info.value, UnauthorizedApiError) and info.value.errcode == 48001
    assert "publish it by hand" in str(info.value)
    assert media_id in drafts(fake_wechat)  # the draft is still there to publish by hand


def test_mass_mpnews_takes_a_draft(wx: Any, fake_wechat: FakeWeChat, cover: str) -> None:
    media_id = wx.draft.add(_news(cover))
    result = wx.mass.send_mpnews(media_id, to_all=True)
    assert mass_jobs(fake_wechat)[result["msg_id"]]["body"]["mpnews"] == {"media_id": media_id}
    openids = add_followers(fake_wechat, 2)
    wx.mass.send_mpnews(media_id, openids=openids)
    with pytest.raises(ApiError) as info:  # old news material ids are gone
        wx.mass.send_mpnews("OLD_NEWS_MATERIAL", to_all=True)
    assert info.value.errcode == 40007


def test_publishjobfinish_event_reaches_a_handler(fake_wechat: FakeWeChat, make_app: Any) -> None:
    app, wx = make_app(fake_wechat, TOKEN="tok", REFRESHER=False)
    seen: list[PublishJobFinishEvent] = []

    @wx.on("publishjobfinish")
    def finished(event: PublishJobFinishEvent) -> None:
        seen.append(event)

    publish_id = wx.freepublish.submit(
        wx.draft.add(_news(wx.media.add("image", JPEG, filename="c.jpg")["media_id"]))
    )
    WeChatUser(app, token="tok").send_raw(publish_event_xml(fake_wechat, publish_id))
    (event,) = seen
    assert type(event) is PublishJobFinishEvent and event.ok and event.publish_id == publish_id
    assert event.article_urls == [a["url"] for a in wx.freepublish.get_article(event.article_id)]
