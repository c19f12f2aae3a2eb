"""WeChatUser: a simulated follower that pushes signed (and encrypted) messages to a callback.

Use it in your own tests to drive handlers the way WeChat does::

    from wxmp.testing import WeChatUser
    from wxmp.replies import TextReply

    def test_echo(app):
        user = WeChatUser(app, token="mytoken")
        assert user.send_text("hi") == TextReply("you said: hi")
        assert user.click("V1001_TODAY_MUSIC") is None        # None means "success"

The target may be a Flask app, a werkzeug/Flask test client, any WSGI app, or a base URL string
(real HTTP with ``requests``). Replies come back parsed (see :mod:`wxmp.replies`); encrypted replies
are verified and decrypted first. A refused request raises :class:`CallbackRefused`.
"""

from __future__ import annotations

import contextvars
import itertools
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..crypto import MessageCrypto, is_envelope, signature
from ..errors import DecryptError
from ..replies import EmptyReply, ParsedReply, Reply, SuccessReply, cdata, parse_reply

__all__ = ["SERVICE_FAILURE", "Attempt", "CallbackRefused", "Delivery", "HttpResult", "WeChatUser"]

#: What WeChat shows the user when no delivery of a push was answered in time (WeChat's 接收普通消息 page,
#: developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html).
SERVICE_FAILURE = "该公众号提供的服务出现故障，请稍后再试"

Mode = Literal["plain", "compatible", "safe"]


@dataclass(frozen=True)
class HttpResult:
    """A raw answer from the callback."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Attempt:
    """One delivery of a push: ``status`` None when WeChat gave up waiting (``timed_out``)."""

    number: int
    status: int | None
    reply: Reply | None = None
    body: bytes = b""

    @property
    def timed_out(self) -> bool:
        return self.status is None

    @property
    def answered(self) -> bool:
        """Answered in time with 200 (a reply, ``success`` or an empty body)."""
        return self.status == 200


@dataclass(frozen=True)
class Delivery:
    """How WeChat fared delivering one push: its attempts and what the user finally sees."""

    attempts: tuple[Attempt, ...]

    @property
    def answered(self) -> Attempt | None:
        """The attempt that was answered in time (None: none was)."""
        return next((a for a in self.attempts if a.answered), None)

    @property
    def failed(self) -> bool:
        """True when no attempt was answered in time: the user sees :data:`SERVICE_FAILURE`."""
        return self.answered is None

    @property
    def reply(self) -> Reply | None:
        """The passive reply shown to the user (None for ``success``/empty, or when it failed)."""
        answered = self.answered
        return answered.reply if answered is not None else None

    @property
    def shown(self) -> str | None:
        """The text the user sees: the text reply, the service-failure notice, or None."""
        if self.failed:
            return SERVICE_FAILURE
        content = getattr(self.reply, "content", None)
        return content if isinstance(content, str) else None


class CallbackRefused(AssertionError):
    """The callback answered something other than 200; ``result`` holds the answer."""

    def __init__(self, result: HttpResult) -> None:
        self.result = result
        self.status = result.status
        super().__init__(f"callback answered {result.status}: {result.text[:200]!r}")


def _xml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return _xml_fields(value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return cdata(value)


def _xml_fields(fields: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for name, value in fields.items():
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        parts.extend(f"<{name}>{_xml_value(v)}</{name}>" for v in values)
    return "".join(parts)


class _Transport:
    def __init__(self, target: Any, timeout: float) -> None:
        self.base: str | None = None
        self.client: Any = None
        self.timeout = timeout
        if isinstance(target, str):
            self.base = target.rstrip("/")
        elif hasattr(target, "test_client"):
            self.client = target.test_client()
        elif hasattr(target, "open") and hasattr(target, "post"):
            self.client = target
        elif _is_asgi(target):
            self.client = _AsgiClient(target, timeout)
        elif callable(target):
            from werkzeug.test import Client

            self.client = Client(target)
        else:
            raise TypeError("target must be a Flask app, a test client, a WSGI or ASGI app, or a base URL")

    def request(self, method: str, path: str, params: dict[str, str], body: bytes | None) -> HttpResult:
        if self.base is not None:
            import requests

            resp = requests.request(
                method,
                self.base + path,
                params=params,
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8"} if body is not None else {},
                timeout=self.timeout,
            )
            return HttpResult(resp.status_code, resp.content, dict(resp.headers))
        resp = self.client.open(
            path,
            method=method,
            query_string=params,
            data=body,
            content_type="text/xml; charset=utf-8" if body is not None else None,
        )
        try:
            return HttpResult(resp.status_code, resp.get_data(), dict(resp.headers))
        finally:
            resp.close()


def _is_asgi(target: Any) -> bool:
    """An ASGI app (``acct.asgi``, FastAPI, Starlette...): its ``__call__`` is a coroutine function."""
    import inspect

    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(type(target), "__call__", None)  # noqa: B004 (a class with an async __call__)
    )


class _AsgiClient:
    """The test-client interface (``open``) over an ASGI app, served on a private event loop thread
    (as a server would: one loop for every request, so per-loop resources such as ``acct.aio``'s
    HTTP clients live as long as the user)."""

    def __init__(self, app: Any, timeout: float) -> None:
        import asyncio

        self.app = app
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="WeChatUser-asgi", daemon=True).start()

    def open(self, path: str, *, method: str, query_string: Any, data: Any, content_type: Any) -> Any:
        import asyncio

        import httpx

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            headers = {"Content-Type": content_type} if content_type else {}
            async with httpx.AsyncClient(transport=transport, base_url="http://wechat.test") as client:
                return await client.request(method, path, params=query_string, content=data, headers=headers)

        response = asyncio.run_coroutine_threadsafe(call(), self.loop).result(self.timeout)
        return _AsgiResponse(response)


class _AsgiResponse:
    def __init__(self, response: Any) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self._body = response.content

    def get_data(self) -> bytes:
        return bytes(self._body)

    def close(self) -> None:
        pass


class WeChatUser:
    """A follower (``openid``) of an account (``account``, its gh_ id) talking to a callback.

    ``mode`` is "plain", "compatible" or "safe" (the default when ``aes_key`` is given).
    ``clock`` supplies ``CreateTime`` and the signed timestamp; ``msg_ids`` supplies MsgIds.
    """

    def __init__(
        self,
        target: Any,
        token: str,
        *,
        aes_key: str | None = None,
        appid: str | None = None,
        mode: Mode | None = None,
        openid: str = "oWxmpTestUser000000000000000",
        account: str = "gh_wxmptest000",
        path: str = "/wechat",
        clock: Callable[[], float] = time.time,
        msg_ids: Iterator[int] | Callable[[], int] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if mode is None:
            mode = "safe" if aes_key else "plain"
        if mode != "plain" and not (aes_key and appid):
            raise ValueError(f"mode {mode!r} needs aes_key and appid")
        self.token = token
        self.mode: Mode = mode
        self.crypto = MessageCrypto(aes_key, appid) if aes_key and appid else None
        self.openid = openid
        self.account = account
        self.path = path
        self.clock = clock
        if msg_ids is None:
            msg_ids = itertools.count(random.getrandbits(40) << 20)
        self._next_id: Callable[[], int] = msg_ids if callable(msg_ids) else msg_ids.__next__
        self._transport = _Transport(target, timeout)
        self.last_result: HttpResult | None = None
        self.last_reply: ParsedReply | None = None

    def __repr__(self) -> str:
        return f"<WeChatUser {self.openid} -> {self.account} {self.mode}>"

    # -- low level ----------------------------------------------------------------------------

    def _signed(self) -> dict[str, str]:
        timestamp = str(int(self.clock()))
        # From the OS, not `random`: a test that seeds `random` (hypothesis does) would otherwise
        # repeat nonces, and the callback refuses a seen signature that comes with another body.
        nonce = str(10**8 + secrets.randbelow(10**10 - 10**8))
        return {"signature": signature(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}

    def request(
        self, method: str, params: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> HttpResult:
        """Send one HTTP request to the callback path as-is (no signing); for hostile-input tests."""
        result = self._transport.request(method, self.path, dict(params or {}), body)
        self.last_result = result
        return result

    def post(self, xml: bytes | str, *, encrypt: bool | None = None) -> HttpResult:
        """Sign (and encrypt, in compatible/safe mode) a message body and POST it."""
        if isinstance(xml, str):
            xml = xml.encode()
        params, xml = self._prepare(xml, encrypt)
        return self.request("POST", params, xml)

    def _prepare(self, xml: bytes, encrypt: bool | None) -> tuple[dict[str, str], bytes]:
        """The signed query and the body (encrypted as the mode wants) of one push."""
        params = self._signed()
        if encrypt is None:
            encrypt = self.mode != "plain"
        if encrypt:
            assert self.crypto is not None, "encryption needs aes_key and appid"
            encrypted = self.crypto.encrypt(xml)
            params["encrypt_type"] = "aes"
            params["msg_signature"] = signature(self.token, params["timestamp"], params["nonce"], encrypted)
            if self.mode == "compatible":
                # Compatible mode: the plaintext fields and Encrypt side by side (§2.2).
                inner = xml.strip()
                xml = (
                    inner[: inner.rindex(b"</xml>")] + f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>".encode()
                )
            else:
                xml = (
                    f"<xml><ToUserName>{cdata(self.account)}</ToUserName>"
                    f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>"
                ).encode()
        return params, xml

    def deliver(
        self,
        xml: bytes | str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        targets: Sequence[Any] | None = None,
    ) -> Delivery:
        """Deliver ``xml`` the way WeChat does: wait ``timeout`` s for each attempt, retry, give up.

        WeChat waits 5 s, then drops the connection and pushes the same message again, about
        ``attempts`` times in all; an answer after the timeout is lost. The answered attempt's reply
        is what the user sees; with none answered, the user sees :data:`SERVICE_FAILURE`. Each
        attempt is signed afresh. ``targets`` (URLs or apps) receive the attempts in turn, as a
        load balancer would spread them over workers. The timeout is real time, so tests use a
        short one together with the same value in ``WXMP_SLOW_WECHAT_TIMEOUT``.
        """
        if isinstance(xml, str):
            xml = xml.encode()
        transports = [self._transport]
        if targets:
            transports = [_Transport(t, self._transport.timeout) for t in targets]
        done: list[Attempt] = []
        for number in range(1, attempts + 1):
            transport = transports[(number - 1) % len(transports)]
            box: list[HttpResult] = []
            thread = threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._attempt, transport, xml, box),
                name="wechat-delivery",
                daemon=True,
            )
            began = time.monotonic()
            thread.start()
            thread.join(timeout)
            if not box:
                done.append(Attempt(number, None))  # WeChat drops the connection and retries
                continue
            result = box[0]
            reply = None
            if result.status == 200:
                body = result.body
                if is_envelope(body):
                    body = self._decrypt_reply(body)
                parsed = parse_reply(body)
                self.last_reply = parsed
                if not isinstance(parsed.reply, (SuccessReply, EmptyReply)):
                    reply = parsed.reply
                done.append(Attempt(number, 200, reply, result.body))
                break
            done.append(Attempt(number, result.status, None, result.body))
            # An error answer is no answer: WeChat retries on its own schedule, not sooner.
            time.sleep(max(0.0, timeout - (time.monotonic() - began)))
        return Delivery(tuple(done))

    def _attempt(self, transport: _Transport, xml: bytes, box: list[HttpResult]) -> None:
        params, body = self._prepare(xml, None)
        try:
            box.append(transport.request("POST", self.path, params, body))
        except Exception as exc:  # a broken connection counts as no answer, as for WeChat
            box.append(HttpResult(599, str(exc).encode()))

    def deliver_text(self, content: str, *, msg_id: int | None = None, **options: Any) -> Delivery:
        """:meth:`deliver` a text message (same MsgId on every attempt)."""
        return self.deliver(self.message_xml("text", {"Content": content}, msg_id=msg_id), **options)

    def verify(self, echostr: str = "wxmp-echo") -> str:
        """The GET handshake WeChat makes when the server URL is saved; returns the echoed text."""
        result = self.request("GET", {**self._signed(), "echostr": echostr})
        if result.status != 200:
            raise CallbackRefused(result)
        return result.text

    def send_raw(self, xml: bytes | str, *, encrypt: bool | None = None) -> Reply | None:
        """POST ``xml`` and return the parsed reply (None for ``success`` or an empty body)."""
        result = self.post(xml, encrypt=encrypt)
        if result.status != 200:
            raise CallbackRefused(result)
        body = result.body
        if is_envelope(body):
            body = self._decrypt_reply(body)
        parsed = parse_reply(body)
        self.last_reply = parsed
        if isinstance(parsed.reply, (SuccessReply, EmptyReply)):
            return None
        if parsed.to_user_name != self.openid or parsed.from_user_name != self.account:
            raise AssertionError(
                f"reply addressed {parsed.from_user_name!r} -> {parsed.to_user_name!r}, "
                f"expected {self.account!r} -> {self.openid!r}"
            )
        return parsed.reply

    def _decrypt_reply(self, body: bytes) -> bytes:
        assert self.crypto is not None, "got an encrypted reply but this user has no aes_key"
        try:
            return self.crypto.decrypt_reply(body, self.token)
        except DecryptError as exc:
            raise AssertionError(str(exc)) from None

    # -- messages -----------------------------------------------------------------------------

    def message_xml(self, msg_type: str, fields: Mapping[str, Any], *, msg_id: int | None = None) -> bytes:
        """The XML WeChat would push for a message of ``msg_type`` with extra XML ``fields``."""
        header = {
            "ToUserName": self.account,
            "FromUserName": self.openid,
            "CreateTime": int(self.clock()),
            "MsgType": msg_type,
        }
        tail: dict[str, Any] = {}
        if msg_type != "event":
            tail["MsgId"] = self._next_id() if msg_id is None else msg_id
        return f"<xml>{_xml_fields({**header, **fields, **tail})}</xml>".encode()

    def send_message(self, msg_type: str, *, msg_id: int | None = None, **fields: Any) -> Reply | None:
        """Push any message type; ``fields`` are XML element names (``Content="hi"``)."""
        return self.send_raw(self.message_xml(msg_type, fields, msg_id=msg_id))

    def send_text(self, content: str, *, msg_id: int | None = None) -> Reply | None:
        """Send a text message."""
        return self.send_message("text", msg_id=msg_id, Content=content)

    def send_image(
        self, media_id: str = "media_image_1", pic_url: str = "http://mmbiz.qpic.cn/test.jpg"
    ) -> Reply | None:
        """Send an image message."""
        return self.send_message("image", PicUrl=pic_url, MediaId=media_id)

    def send_voice(
        self, media_id: str = "media_voice_1", format: str = "amr", recognition: str | None = None
    ) -> Reply | None:
        """Send a voice message (``recognition`` is the speech-to-text field)."""
        return self.send_message("voice", MediaId=media_id, Format=format, Recognition=recognition)

    def send_video(self, media_id: str = "media_video_1", thumb_media_id: str = "thumb_1") -> Reply | None:
        """Send a video message."""
        return self.send_message("video", MediaId=media_id, ThumbMediaId=thumb_media_id)

    def send_short_video(
        self, media_id: str = "media_video_1", thumb_media_id: str = "thumb_1"
    ) -> Reply | None:
        """Send a short video message."""
        return self.send_message("shortvideo", MediaId=media_id, ThumbMediaId=thumb_media_id)

    def send_location(self, lat: float, lng: float, *, scale: int = 15, label: str = "") -> Reply | None:
        """Share a location (Location_X is the latitude, Location_Y the longitude)."""
        return self.send_message("location", Location_X=lat, Location_Y=lng, Scale=scale, Label=label)

    def send_link(self, title: str, description: str, url: str) -> Reply | None:
        """Share a link."""
        return self.send_message("link", Title=title, Description=description, Url=url)

    # -- events -------------------------------------------------------------------------------

    def send_event(self, name: str, **fields: Any) -> Reply | None:
        """Push event ``name`` (as WeChat spells it: ``"CLICK"``, ``"subscribe"``) with XML ``fields``."""
        return self.send_raw(self.message_xml("event", {"Event": name, **fields}))

    def subscribe(self, scene: str | int | None = None, ticket: str | None = None) -> Reply | None:
        """Follow the account; with ``scene``, as if from a parameterised QR code."""
        if scene is None:
            return self.send_event("subscribe")
        return self.send_event("subscribe", EventKey=f"qrscene_{scene}", Ticket=ticket or "gQTestTicket")

    def unsubscribe(self) -> Reply | None:
        """Unfollow the account."""
        return self.send_event("unsubscribe")

    def scan(self, scene: str | int, ticket: str = "gQTestTicket") -> Reply | None:
        """Scan a parameterised QR code while already following."""
        return self.send_event("SCAN", EventKey=str(scene), Ticket=ticket)

    def click(self, key: str) -> Reply | None:
        """Tap a ``click`` menu button."""
        return self.send_event("CLICK", EventKey=key)

    def view(self, url: str, menu_id: int | None = None) -> Reply | None:
        """Tap a ``view`` menu button."""
        return self.send_event("VIEW", EventKey=url, MenuId=menu_id)

    def report_location(self, lat: float, lng: float, precision: float = 65.0) -> Reply | None:
        """The periodic ``LOCATION`` event."""
        return self.send_event("LOCATION", Latitude=lat, Longitude=lng, Precision=precision)

    def scancode(
        self, key: str, result: str, *, wait: bool = False, scan_type: str = "qrcode"
    ) -> Reply | None:
        """``scancode_push`` (or ``scancode_waitmsg`` with ``wait=True``) menu events."""
        name = "scancode_waitmsg" if wait else "scancode_push"
        return self.send_event(name, EventKey=key, ScanCodeInfo={"ScanType": scan_type, "ScanResult": result})

    def select_location(
        self, key: str, lat: float, lng: float, *, label: str = "", poiname: str = "", scale: int = 15
    ) -> Reply | None:
        """The ``location_select`` menu event."""
        info = {"Location_X": lat, "Location_Y": lng, "Scale": scale, "Label": label, "Poiname": poiname}
        return self.send_event("location_select", EventKey=key, SendLocationInfo=info)
