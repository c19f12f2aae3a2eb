"""The error table: errcode (and path) -> class, the rid and the extra fields an answer carries."""

from __future__ import annotations

import pickle

import pytest

from wxmp import errors
from wxmp.errors import (
    ApiError,
    DuplicateClientMsgIdError,
    IPNotWhitelistedError,
    PublishUnauthorizedError,
    RetiredApiError,
    TemplateDataError,
    UnauthorizedApiError,
)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (45047, errors.ReplyLimitError),
        (45065, errors.DuplicateClientMsgIdError),
        (45066, errors.RetryTooSoonError),
        (45103, errors.RetiredApiError),
        (47003, errors.TemplateDataError),
        (65320, errors.MatchRuleRefusedError),
    ],
)
def test_new_codes_map_to_their_classes(code: int, cls: type[ApiError]) -> None:
    assert type(ApiError.from_response(code, "x", "/cgi-bin/any")) is cls


def test_48001_on_freepublish_is_a_publish_error() -> None:
    err = ApiError.from_response(48001, "api unauthorized rid: 1-2-3", "/cgi-bin/freepublish/submit")
    assert type(err) is PublishUnauthorizedError and isinstance(err, UnauthorizedApiError)
    assert "mp.weixin.qq.com" in str(err) and "草稿箱" in str(err)
    assert type(ApiError.from_response(48001, "", "/cgi-bin/draft/add")) is UnauthorizedApiError


def test_rid_and_data_survive_pickling() -> None:
    err = ApiError.from_response(
        45065,
        "clientmsgid exist rid: 6617a2b4-1c2d3e4f-5a6b7c8d",
        "/cgi-bin/message/mass/send",
        {"errcode": 45065, "errmsg": "clientmsgid exist", "msg_id": 1000000001},
    )
    assert isinstance(err, DuplicateClientMsgIdError)
    assert err.rid == "6617a2b4-1c2d3e4f-5a6b7c8d" and err.msg_id == 1000000001
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is DuplicateClientMsgIdError and again.msg_id == 1000000001 and again.rid == err.rid
    assert ApiError(40001, "no rid here").rid is None
    assert DuplicateClientMsgIdError(45065, "no job id").msg_id is None


def test_ip_whitelist_error_names_the_ip() -> None:
    err = ApiError.from_response(
        40164, "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: 1-2-3", "/cgi-bin/token"
    )
    assert isinstance(err, IPNotWhitelistedError) and err.ip == "203.0.113.7"
    assert IPNotWhitelistedError(40164, "other text").ip is None


def test_retired_api_error_names_its_replacement() -> None:
    err = RetiredApiError(path="/datacube/getuserread", replacement="/datacube/getarticleread")
    assert err.errcode == 45103 and err.replacement == "/datacube/getarticleread"
    assert pickle.loads(pickle.dumps(err)).replacement == "/datacube/getarticleread"
    assert ApiError.from_response(45103, "This API has been unsupported").replacement is None  # type: ignore[attr-defined]


def test_template_data_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        raise TemplateDataError(47003, "data.thing1: 21 characters")
