"""Replies: every type rendered, re-parsed, and well-formed whatever the content."""

from __future__ import annotations

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


def test_str_and_none() -> None:
    assert parse_reply(reply_for(MSG, "plain")).reply == TextReply("plain")
    assert reply_for(MSG, None) == "success"
    assert reply_for(MSG, SuccessReply()) == "success"
    assert reply_for(MSG, EmptyReply()) == ""
    assert parse_reply("success").reply == SuccessReply()
    assert parse_reply("").reply == EmptyReply()


def test_wrong_return_type() -> None:
    with pytest.raises(TypeError):
        reply_for(MSG, 42)


def test_news_limits() -> None:
    with pytest.raises(ValueError):
        NewsReply([])
    with pytest.raises(ValueError):
        NewsReply([Article("t")] * 9)
    with pytest.raises(TypeError):
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
    with pytest.raises(AttributeError):
        TextReply("x").content = "y"  # type: ignore[misc]
