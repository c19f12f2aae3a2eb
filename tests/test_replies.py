"""Replies: every type rendered, re-parsed, and well-formed whatever the content."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from wxmp import messages
from wxmp.replies import (
    Article,
    EmptyReply,
    ImageReply,
    MusicReply,
    NewsReply,
    Reply,
    SuccessReply,
    TextReply,
    TransferCustomerServiceReply,
    VideoReply,
    VoiceReply,
    cdata,
    parse_reply,
    render,
    reply_for,
)

DATA = Path(__file__).parent / "data"
MSG = messages.parse((DATA / "text.xml").read_bytes())

ALL: list[Reply] = [
    TextReply("你好\n第二行"),
    ImageReply("media_img"),
    VoiceReply("media_voice"),
    VideoReply("media_video", title="标题", description="描述"),
    VideoReply("media_video"),
    MusicReply("http://m/1.mp3", "thumb", title="歌", description="d", hq_music_url="http://m/1hq.mp3"),
    NewsReply([Article("t1", "d1", "http://p/1.jpg", "http://u/1")]),
    NewsReply([Article(f"t{i}", url=f"http://u/{i}") for i in range(8)]),
    TransferCustomerServiceReply(),
    TransferCustomerServiceReply("kf2001@gh_3a8c1f2b9d07"),
]


@pytest.mark.parametrize("reply", ALL, ids=lambda r: type(r).__name__)
def test_render_and_parse_back(reply: Reply) -> None:
    xml = reply_for(MSG, reply, now=1714036600)
    etree.fromstring(xml.encode())  # well-formed
    parsed = parse_reply(xml)
    assert parsed.to_user_name == MSG.from_user_name  # swapped
    assert parsed.from_user_name == MSG.to_user_name
    assert parsed.create_time == 1714036600
    assert parsed.reply == reply


def test_exact_text_xml() -> None:
    assert render(TextReply("hi"), "oUser", "gh_acc", 12) == (
        "<xml><ToUserName><![CDATA[oUser]]></ToUserName><FromUserName><![CDATA[gh_acc]]></FromUserName>"
        "<CreateTime>12</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[hi]]></Content></xml>"
    )


def test_transfer_xml() -> None:
    xml = render(TransferCustomerServiceReply("kf@gh"), "o", "gh", 1)
    assert "<MsgType><![CDATA[transfer_customer_service]]></MsgType>" in xml
    assert "<TransInfo><KfAccount><![CDATA[kf@gh]]></KfAccount></TransInfo>" in xml


HEADER = (
    "<xml><ToUserName><![CDATA[o]]></ToUserName><FromUserName><![CDATA[gh]]></FromUserName>"
    "<CreateTime>1</CreateTime><MsgType><![CDATA[{}]]></MsgType>"
)


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (ImageReply("m1"), "<Image><MediaId><![CDATA[m1]]></MediaId></Image>"),
        (VoiceReply("m2"), "<Voice><MediaId><![CDATA[m2]]></MediaId></Voice>"),
        (VideoReply("m3"), "<Video><MediaId><![CDATA[m3]]></MediaId></Video>"),
        (
            VideoReply("m3", "t", "d"),
            "<Video><MediaId><![CDATA[m3]]></MediaId><Title><![CDATA[t]]></Title>"
            "<Description><![CDATA[d]]></Description></Video>",
        ),
        (
            MusicReply("http://m", "th"),  # no HQ url: WeChat gets the normal one twice
            "<Music><MusicUrl><![CDATA[http://m]]></MusicUrl><HQMusicUrl><![CDATA[http://m]]></HQMusicUrl>"
            "<ThumbMediaId><![CDATA[th]]></ThumbMediaId></Music>",
        ),
        (
            MusicReply("http://m", "th", "t", "d", "http://hq"),
            "<Music><Title><![CDATA[t]]></Title><Description><![CDATA[d]]></Description>"
            "<MusicUrl><![CDATA[http://m]]></MusicUrl><HQMusicUrl><![CDATA[http://hq]]></HQMusicUrl>"
            "<ThumbMediaId><![CDATA[th]]></ThumbMediaId></Music>",
        ),
        (
            NewsReply([Article("a", "b", "c", "d"), Article("e")]),
            "<ArticleCount>2</ArticleCount><Articles>"
            "<item><Title><![CDATA[a]]></Title><Description><![CDATA[b]]></Description>"
            "<PicUrl><![CDATA[c]]></PicUrl><Url><![CDATA[d]]></Url></item>"
            "<item><Title><![CDATA[e]]></Title><Description><![CDATA[]]></Description>"
            "<PicUrl><![CDATA[]]></PicUrl><Url><![CDATA[]]></Url></item></Articles>",
        ),
        # without an agent: nothing after the MsgType (never the text "None")
        (TransferCustomerServiceReply(), ""),
        (
            TransferCustomerServiceReply("kf@gh"),
            "<TransInfo><KfAccount><![CDATA[kf@gh]]></KfAccount></TransInfo>",
        ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Reply) else "",
)
def test_exact_reply_xml(reply: Reply, body: str) -> None:
    assert render(reply, "o", "gh", 1) == HEADER.format(reply.msg_type) + body + "</xml>"


def test_a_reply_type_without_a_body_renders_the_header_only() -> None:
    class Typing(Reply):
        msg_type = "typing"

    assert Typing().body() == ""
    assert render(Typing(), "o", "gh", 1) == HEADER.format("typing") + "</xml>"


def test_reply_to_a_message_without_addresses_has_empty_ones() -> None:
    bare = messages.parse("<xml><MsgType>text</MsgType><Content>x</Content><CreateTime>1</CreateTime></xml>")
    assert reply_for(bare, "hi", now=5) == (
        "<xml><ToUserName><![CDATA[]]></ToUserName><FromUserName><![CDATA[]]></FromUserName>"
        "<CreateTime>5</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content></xml>"
    )


def test_cdata_renders_non_text_values() -> None:
    assert cdata(12) == "<![CDATA[12]]>"
    assert cdata("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("<xml><MsgType>text</MsgType></xml>", TextReply("")),
        ("<xml><MsgType>image</MsgType></xml>", ImageReply("")),
        ("<xml><MsgType>voice</MsgType><Voice></Voice></xml>", VoiceReply("")),
        ("<xml><MsgType>video</MsgType></xml>", VideoReply("")),
        ("<xml><MsgType>music</MsgType></xml>", MusicReply("", "")),
        (
            "<xml><MsgType>news</MsgType><Articles><item><Title>t</Title></item></Articles></xml>",
            NewsReply([Article("t")]),
        ),
        ("<xml><MsgType>news</MsgType><Articles><item></item></Articles></xml>", NewsReply([Article("")])),
        ("<xml><MsgType>transfer_customer_service</MsgType></xml>", TransferCustomerServiceReply()),
    ],
)
def test_parse_reply_fills_missing_fields_with_empty_values(xml: str, expected: Reply) -> None:
    parsed = parse_reply(xml.encode())
    assert parsed.reply == expected
    assert (parsed.to_user_name, parsed.from_user_name, parsed.create_time) == ("", "", 0)
    assert parsed.raw["MsgType"] == expected.msg_type


def test_parse_reply_keeps_the_fields_and_refuses_unknown_types() -> None:
    xml = render(TextReply("hi"), "o", "gh", 7)
    parsed = parse_reply(xml.encode())
    assert parsed.raw == {
        "ToUserName": "o",
        "FromUserName": "gh",
        "CreateTime": "7",
        "MsgType": "text",
        "Content": "hi",
    }
    for empty, reply in (("", EmptyReply()), (b"success", SuccessReply()), (" \n", EmptyReply())):
        assert parse_reply(empty) == parsed.__class__(reply, "", "", 0, {})
        assert parse_reply(empty).raw == {}
    with pytest.raises(ValueError, match=re.escape("unknown reply MsgType 'chat'")):
        parse_reply("<xml><MsgType>chat</MsgType></xml>")
    with pytest.raises(ValueError, match=r"^a news reply takes 1 to 8 articles, got 0$"):
        parse_reply("<xml><MsgType>news</MsgType></xml>")
    with pytest.raises(ValueError, match=re.escape("unknown reply MsgType ''")):
        parse_reply("<xml><Content>x</Content></xml>")


def test_str_and_none() -> None:
    assert parse_reply(reply_for(MSG, "plain")).reply == TextReply("plain")
    assert reply_for(MSG, None) == "success"
    assert reply_for(MSG, SuccessReply()) == "success"
    assert reply_for(MSG, EmptyReply()) == ""
    assert parse_reply("success").reply == SuccessReply()
    assert parse_reply("").reply == EmptyReply()


def test_wrong_return_type() -> None:
    with pytest.raises(TypeError, match=r"^a handler must return str, a Reply or None, not int$"):
        reply_for(MSG, 42)


def test_news_limits() -> None:
    with pytest.raises(ValueError, match=r"^a news reply takes 1 to 8 articles, got 0$"):
        NewsReply([])
    with pytest.raises(ValueError, match=r"^a news reply takes 1 to 8 articles, got 9$"):
        NewsReply([Article("t")] * 9)
    with pytest.raises(TypeError, match=r"^articles must be Article objects$"):
        NewsReply(["t"])  # type: ignore[list-item]
    assert NewsReply(Article("one")).articles == (Article("one"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a]]>b", "a]]>b"),
        ("]]>]]>", "]]>]]>"),
        ("x\x00y\x07z\x1b", "xyz"),
        ("tab\tnl\ncr\r", "tab\tnl\ncr\n"),  # XML parsers normalise \r
        ("中文 😀", "中文 😀"),
        ("\ud800lone", "lone"),
        ("\ufffe\uffff", ""),
    ],
)
def test_cdata_content_round_trips(value: str, expected: str) -> None:
    xml = render(TextReply(value), "o", "gh", 1)
    root = etree.fromstring(xml.encode("utf-8", "surrogatepass"))
    assert root.findtext("Content") == expected


@given(st.text())
def test_any_text_is_well_formed(value: str) -> None:
    xml = render(TextReply(value), value, "gh", 1)
    root = etree.fromstring(xml.encode("utf-8", "surrogatepass"))
    # Only the characters XML 1.0 forbids are dropped.
    legal = "".join(
        c
        for c in value
        if c in "\t\n\r" or ("\x20" <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c >= "\U00010000"
    )
    assert root.findtext("Content") == legal.replace("\r\n", "\n").replace("\r", "\n")
    assert root.findtext("ToUserName") == legal.replace("\r\n", "\n").replace("\r", "\n")


def test_replies_are_frozen_dataclasses() -> None:
    with pytest.raises(AttributeError, match="cannot assign to field 'content'"):
        TextReply("x").content = "y"  # type: ignore[misc]
