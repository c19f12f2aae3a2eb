"""wx.datacube over real HTTP against FakeWeChat: current endpoints, local range checks, retired ones."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from wxmp import ApiError, RetiredApiError
from wxmp.api.datacube import SPANS
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.datacube import set_rows

BEIJING = timezone(timedelta(hours=8))
D = date(2026, 3, 2)


def _ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 12, tzinfo=BEIJING).timestamp())


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


def test_user_summary_and_cumulate(wx: Any, fake_wechat: FakeWeChat) -> None:
    fake_wechat.add_user("o1", subscribe_time=_ts(D))
    fake_wechat.add_user("o2", subscribe_time=_ts(D + timedelta(days=1)))
    summary = wx.datacube.user_summary(D, "2026-03-04")
    assert fake_wechat.calls("/datacube/getusersummary")[0].json == {
        "begin_date": "2026-03-02",
        "end_date": "2026-03-04",
    }
    assert [r["new_user"] for r in summary["list"]] == [1, 1, 0]
    cumulate = wx.datacube.user_cumulate(D, D + timedelta(days=6))
    assert [r["cumulate_user"] for r in cumulate["list"]][:3] == [1, 2, 2]


@pytest.mark.parametrize(
    ("method", "endpoint"),
    [
        ("biz_summary", "getbizsummary"),
        ("article_read", "getarticleread"),
        ("article_share", "getarticleshare"),
        ("article_total_detail", "getarticletotaldetail"),
    ],
)
def test_published_content_statistics(wx: Any, fake_wechat: FakeWeChat, method: str, endpoint: str) -> None:
    set_rows(
        fake_wechat, endpoint, [{"ref_date": "2026-03-02", "msgid": "100_1"}, {"ref_date": "2026-03-05"}]
    )
    result = getattr(wx.datacube, method)(D, D)
    assert result == {"list": [{"ref_date": "2026-03-02", "msgid": "100_1"}], "is_delay": False}
    assert fake_wechat.count(f"/datacube/{endpoint}") == 1


def test_message_and_interface_statistics(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.datacube.upstream_msg(D, D, period="hour")
    wx.datacube.upstream_msg_dist(D, D + timedelta(days=14))
    wx.datacube.interface_summary(D, D + timedelta(days=29))
    wx.datacube.interface_summary(D, D, hourly=True)
    paths = [r.path for r in fake_wechat.requests if r.path.startswith("/datacube/")]
    assert paths == [
        "/datacube/getupstreammsghour",
        "/datacube/getupstreammsgdist",
        "/datacube/getinterfacesummary",
        "/datacube/getinterfacesummaryhour",
    ]
    with pytest.raises(ValueError, match="period"):
        wx.datacube.upstream_msg(D, D, period="year")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda wx: wx.datacube.user_summary(D, D + timedelta(days=7)), "8 days asked; WeChat allows 7"),
        (lambda wx: wx.datacube.article_read(D, D + timedelta(days=1)), "allows 1"),
        (lambda wx: wx.datacube.user_summary(D, D - timedelta(days=1)), "after end_date"),
        (lambda wx: wx.datacube.user_summary("2026/03/02", D), "YYYY-MM-DD"),
        (lambda wx: wx.datacube.user_summary(date.today(), date.today() + timedelta(days=1)), "yesterday"),
    ],
)
def test_ranges_are_checked_before_the_call(
    wx: Any, fake_wechat: FakeWeChat, call: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(wx)
    assert not [r for r in fake_wechat.requests if r.path.startswith("/datacube/")]


def test_fake_checks_ranges_too(wx: Any) -> None:
    for body, errcode in (
        ({"begin_date": "2026-03-02", "end_date": "2026-03-09"}, 61501),
        ({"begin_date": "03/02", "end_date": "2026-03-02"}, 61500),
    ):
        with pytest.raises(ApiError) as info:
            wx.client.post("/datacube/getusersummary", body)
        assert info.value.errcode == errcode
    assert wx.datacube.query("getusersummary", D, D + timedelta(days=3), check=False)["list"]


@pytest.mark.parametrize(
    ("method", "kwargs", "replacement"),
    [
        ("article_summary", {}, "/datacube/getarticleread"),
        ("article_total", {}, "/datacube/getarticletotaldetail"),
        ("user_read", {}, "/datacube/getarticleread"),
        ("user_read", {"hourly": True}, "/datacube/getarticleread"),
        ("user_share", {}, "/datacube/getarticleshare"),
        ("user_share", {"hourly": True}, "/datacube/getarticleshare"),
    ],
)
def test_retired_endpoints_name_their_replacement(
    wx: Any, fake_wechat: FakeWeChat, method: str, kwargs: dict[str, Any], replacement: str
) -> None:
    with pytest.raises(RetiredApiError) as info:
        getattr(wx.datacube, method)(D, D, **kwargs)
    assert info.value.errcode == 45103 and info.value.replacement == replacement
    assert replacement.rsplit("/", 1)[1] in str(info.value)
    assert not [r for r in fake_wechat.requests if r.path.startswith("/datacube/")]  # no request


def test_the_fake_answers_45103_for_retired_paths(wx: Any) -> None:
    with pytest.raises(RetiredApiError) as info:
        wx.client.post("/datacube/getuserread", {"begin_date": "2026-03-02", "end_date": "2026-03-02"})
    assert info.value.errcode == 45103 and info.value.replacement is None
    assert "getbizsummary" in SPANS
