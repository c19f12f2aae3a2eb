"""Filters: field matching, regex, kinds, and composition with & | ~."""

from __future__ import annotations

import functools
import re

import pytest

from wxmp import filters as F
from wxmp.messages import parse


def text(content: str, user: str = "oA") -> object:
    return parse(
        f"<xml><ToUserName>gh</ToUserName><FromUserName>{user}</FromUserName><CreateTime>1</CreateTime>"
        f"<MsgType>text</MsgType><Content><![CDATA[{content}]]></Content><MsgId>1</MsgId></xml>"
    )


CLICK = parse(
    "<xml><ToUserName>gh</ToUserName><FromUserName>oA</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>event</MsgType><Event>CLICK</Event><EventKey>K1</EventKey></xml>"
)


def test_field_equality_alias_and_missing() -> None:
    assert F.field("key", "K1")(CLICK)
    assert F.field("event_key", "K1")(CLICK)
    assert not F.field("key", "K2")(CLICK)
    assert not F.field("content", "x")(CLICK)  # attribute missing on events
    assert F.field("type", "text")(text("x"))  # "type" means msg_type
    assert not F.field("type", "event")(text("x"))


@pytest.mark.parametrize(
    "expected",
    [None, [None], (None,), {None}, lambda value: True, re.compile("")],
    ids=["value", "list", "tuple", "set", "callable", "pattern"],
)
def test_a_missing_attribute_never_matches(expected: object) -> None:
    # events have no `content`: not even None, an always-true callable or an empty pattern match
    assert not F.field("content", expected)(CLICK)


def test_choices_may_hold_unhashable_values() -> None:
    assert F.field("key", [["K0"], "K1"])(CLICK)


def test_field_collections_callables_patterns() -> None:
    assert F.field("key", {"K1", "K2"})(CLICK)
    assert F.field("key", ["K0", "K1"])(CLICK)
    assert not F.field("key", ("K0",))(CLICK)
    assert F.field("key", lambda k: k.startswith("K"))(CLICK)
    m = F.field("key", re.compile(r"K(\d)"))(CLICK)
    assert isinstance(m, re.Match) and m[1] == "1"


def test_regex_returns_match() -> None:
    f = F.regex(r"^help\s+(\w+)")
    m = f(text("help me"))
    assert m and m[1] == "me"
    assert not f(text("no help"))
    assert not f(CLICK)


def test_kind_and_openid() -> None:
    assert F.kind("TEXT")(text("x"))
    assert F.kind("event")(CLICK) and F.kind("click")(CLICK)
    assert not F.kind("image")(text("x"))
    assert F.openid("oA", "oB")(text("x"))
    assert not F.openid("oB")(text("x"))


def test_composition() -> None:
    hello = F.regex("hello")
    admin = F.openid("oAdmin")
    assert (hello & admin)(text("hello", "oAdmin"))
    assert not (hello & admin)(text("hello", "oA"))
    assert (hello | admin)(text("bye", "oAdmin"))
    assert not (hello | admin)(text("bye", "oA"))
    assert (hello & ~admin)(text("hello", "oA"))
    assert not (~hello)(text("hello"))


def test_and_keeps_the_regex_match() -> None:
    m = (F.openid("oA") & F.regex(r"(\d+)"))(text("order 42"))
    assert isinstance(m, re.Match) and m[1] == "42"
    m = (F.regex(r"(\d+)") & F.openid("oA"))(text("order 42"))
    assert isinstance(m, re.Match)


def test_plain_callables_compose() -> None:
    long = lambda msg: len(msg.content) > 3  # noqa: E731
    assert (F.kind("text") & long)(text("long text"))
    assert (long & F.kind("text"))(text("long text"))
    assert not (long | F.openid("oZ"))(text("ab"))
    assert not (long & F.kind("text"))(text("ab"))  # a plain callable on the left still means "and"
    assert (long | F.kind("text"))(text("ab"))  # ... and "or"
    assert F.where(long)(text("abcd"))
    with pytest.raises(TypeError, match=r"^a filter must be callable, not int$"):
        F.where(42)  # type: ignore[arg-type]


def test_repr_names_the_filter() -> None:
    assert repr(F.field("key", "K1") & ~F.kind("text")) == "<Filter (key='K1' & ~kind('text',))>"
    assert repr(F.openid("oA") | F.regex(r"^a")) == "<Filter (openid | regex('^a'))>"
    assert repr(F.kind("Click", "SCAN")) == "<Filter kind('click', 'scan')>"

    def vip(msg: object) -> bool:
        return True

    assert repr(F.where(vip)) == "<Filter vip>"
    unnamed = functools.partial(vip)  # a callable without __name__
    assert repr(F.where(unnamed)) == f"<Filter {unnamed!r}>"
    assert repr(F.Filter(vip, "vip only")) == "<Filter vip only>"
