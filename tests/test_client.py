"""ApiClient on the wire: raw UTF-8 JSON, tolerant decoding, typed errors, no token in errors."""

from __future__ import annotations

import logging

import pytest
from werkzeug.wrappers import Response

from wxmp import ApiClient, ApiError, NetworkError, OutOfWindowError, QuotaExceededError
from wxmp.errors import (
    CredentialError,
    InvalidOpenIDError,
    IPNotWhitelistedError,
    NoMenuError,
    SystemBusyError,
    TokenInvalidError,
)
from wxmp.testing import FakeWeChat
from wxmp.testing.fake import endpoint
from wxmp.testing.servers import free_port


@endpoint("POST", "/test/echo", auth=False)
def _echo(fake, req):
    return {"errcode": 0, "got": req.json}


@endpoint("GET", "/test/plain-json", auth=False)
def _plain_json(fake, req):
    # WeChat sometimes labels JSON text/plain, with raw control characters inside strings.
    return Response(b'{"errcode":0,"msg":"a\tb"}', content_type="text/plain")


@endpoint("GET", "/test/bytes", auth=False)
def _bytes(fake, req):
    return b"\x89PNG\r\n\x1a\nrest"


@endpoint("GET", "/test/errcode", auth=False)
def _errcode(fake, req):
    return {"errcode": int(req.args["code"]), "errmsg": "boom rid: 1234"}


@pytest.fixture
def fake():
    with FakeWeChat() as fake:
        yield fake


@pytest.fixture
def client(fake):
    return ApiClient(fake.url, timeout=1.0)


def test_json_goes_out_as_raw_utf8(fake, client):
    result = client.post("/test/echo", {"name": "菜单", "nested": {"text": "你好"}}, auth=False)
    assert result["got"] == {"name": "菜单", "nested": {"text": "你好"}}
    (req,) = fake.calls("/test/echo")
    assert "菜单".encode() in req.body
    assert b"\\u" not in req.body
    assert req.content_type.startswith("application/json")


def test_json_decoded_whatever_the_content_type(client):
    assert client.get("/test/plain-json", auth=False)["msg"] == "a\tb"


def test_binary_answers(client):
    assert client.get("/test/bytes", auth=False, binary=True).startswith(b"\x89PNG")
    with pytest.raises(NetworkError, match="non-JSON"):
        client.get("/test/bytes", auth=False)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (-1, SystemBusyError),
        (40001, TokenInvalidError),
        (40125, CredentialError),
        (40164, IPNotWhitelistedError),
        (45009, QuotaExceededError),
        (40003, InvalidOpenIDError),
        (45015, OutOfWindowError),
        (46003, NoMenuError),
        (99999, ApiError),
    ],
)
def test_errcodes_become_typed_errors(client, code, cls):
    with pytest.raises(cls) as info:
        client.get("/test/errcode", {"code": code}, auth=False)
    err = info.value
    assert type(err) is cls
    assert (err.errcode, err.path) == (code, "/test/errcode")
    assert "rid: 1234" in err.errmsg
    assert str(code) in str(err)


def test_api_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(ApiError.from_response(45015, "out of time", "/x")))
    assert isinstance(err, OutOfWindowError) and err.errcode == 45015


def test_http_5xx_is_a_network_error(fake, client):
    fake.http_error_next(1, 502)
    with pytest.raises(NetworkError) as info:
        client.get("/test/errcode", {"code": 0}, auth=False)
    assert info.value.status == 502


def test_connection_errors_do_not_leak_the_token_or_secret(caplog):
    caplog.set_level(logging.DEBUG)
    client = ApiClient(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(NetworkError) as info:
        client.get("/cgi-bin/token", {"appid": "wx1", "secret": "TOPSECRET", "access_token": "TOKENVALUE"})
    text = repr(info.value) + str(info.value) + "".join(r.getMessage() for r in caplog.records)
    assert "TOPSECRET" not in text and "TOKENVALUE" not in text
    assert info.value.__suppress_context__  # tracebacks do not print requests' URL-bearing error


def test_timeout_is_a_network_error(fake, client):
    client.timeout = 0.2
    fake.hang_next(1, 3)
    with pytest.raises(NetworkError, match="timed out"):
        client.get("/test/errcode", {"code": 0}, auth=False)


def test_urllib3_debug_lines_are_redacted(fake, caplog):
    caplog.set_level(logging.DEBUG, "urllib3")
    client = ApiClient(fake.url)
    client.fetch_access_token(fake.appid, fake.secret, stable=False, force=False)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/cgi-bin/token" in line for line in lines)
    assert all(fake.secret not in line for line in lines)
    assert any("secret=***" in line for line in lines)
