"""The sandbox: chat with your bot in a browser, with no WeChat account.

With ``WXMP_SANDBOX`` on, :func:`prepare` starts a :class:`~wxmp.testing.FakeWeChat` in-process and
points the app's API client at it (appid, secret and API base are the fake's), so ``wx.menu.create``,
``wx.message.send_text`` and friends work in handlers without credentials. :func:`register` adds
the chat page at ``/wxmp/sandbox``: every action there (text, location, image, menu taps, follow and
unfollow) is sent through the app's real callback, signed, and encrypted when an AES key is set, as
WeChat would send it; replies, customer-service messages and mass sends made through the fake show
up in the conversation, and a panel shows the raw XML of each exchange.

The default (``WXMP_SANDBOX`` unset) is on only for a development app (``app.debug`` or
``app.testing``, e.g. ``flask run --debug`` or ``FLASK_DEBUG=1``) that has no ``WXMP_SECRET``:
never by default in production. ``register`` also mounts the status page (:mod:`wxmp.status`)
when ``WXMP_STATUS`` is on.

Isolation, so that a sandbox switched on by mistake in production gives nothing away:

- with a ``WXMP_SECRET`` it is refused at start (``ConfigError``): taking over the API client of a
  real account would send its production calls to a local fake;
- it never signs with the app's Token nor encrypts with its EncodingAESKey: the page talks to a
  private :class:`~wxmp.middleware.Callback` (same handlers, same app context) that uses
  ``SANDBOX_TOKEN`` and a sandbox-only key, so no exchange shown on the page is a valid push for
  the real callback;
- its pages answer only direct local requests (loopback, no proxy header, a local ``Host``);
- its memory is bounded: the last ``MAX_ITEMS`` conversation items, and the fake's records trimmed.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, abort, current_app, jsonify, render_template, request, url_for

from . import signals
from .crypto import is_envelope
from .errors import ConfigError
from .pages import templates_dir
from .replies import (
    ImageReply,
    MusicReply,
    NewsReply,
    Reply,
    TextReply,
    TransferCustomerServiceReply,
    VideoReply,
    VoiceReply,
    parse_reply,
)

if TYPE_CHECKING:
    from .account import Account
    from .config import Settings
    from .extension import AppState
    from .middleware import Callback
    from .testing.fake import FakeWeChat

__all__ = ["SANDBOX_TOKEN", "Sandbox", "prepare", "register", "templates_dir"]

log = logging.getLogger("wxmp.sandbox")

#: The callback Token used when the app configures none (the sandbox needs a callback to talk to).
SANDBOX_TOKEN = "wxmpsandbox"  # noqa: S105 (a local fake's Token, not a secret)
SANDBOX_APPID = "wx000000000sandbox"
#: The EncodingAESKey of the sandbox's private callback (a local fake's, not a secret).
SANDBOX_AES_KEY = "wxmpSandboxAesKey00000000000000000000000000"
#: Conversation items kept; older ones are dropped (the page has shown them already).
MAX_ITEMS = 200
#: Records of the sandbox's fake WeChat kept (requests, customer-service messages, mass jobs).
MAX_RECORDS = 200
SANDBOX_OPENID = "oSandboxUser000000000000000"
SANDBOX_ACCOUNT = "gh_wxmpsandbox"
SANDBOX_IMAGE = "SANDBOX_IMAGE"

_ASSETS = {"wxmp.css": "text/css", "wxmp_sandbox.js": "text/javascript"}
_SAMPLE_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="240" height="160" viewBox="0 0 240 160">'
    b'<rect width="240" height="160" fill="#9fd6ff"/><circle cx="190" cy="40" r="22" fill="#ffd23f"/>'
    b'<path d="M0 160 L80 70 L130 125 L165 95 L240 160 Z" fill="#3a9b5c"/></svg>'
)


# -- set-up --------------------------------------------------------------------------------------


def prepare(app: Flask, settings: Settings, name: str = "default") -> Settings:
    """Start a FakeWeChat for the account ``name`` and return its ``settings`` pointed at it.

    Called by ``WxMP.init_app`` before the accounts are built, only for accounts without a secret
    (the settings refuse the sandbox beside one). The account's appid is kept when one is
    configured; the secret and API base become the fake's; a process-local cache is supplied when
    none is configured. The account's Token is left alone: the sandbox signs with its own. The
    single-account keys' effective values are written back to ``app.config``.
    """
    from .testing.fake import FakeWeChat

    if settings.secret:  # Settings refuses this; a hand-built Settings must not get around it
        raise ConfigError("WXMP_SANDBOX", "cannot run beside a real WXMP_SECRET")
    fake = FakeWeChat(appid=settings.appid or SANDBOX_APPID).start()
    sandboxes: dict[str, Sandbox] = app.extensions.setdefault("wxmp.sandboxes", {})
    sandboxes[name] = Sandbox(fake)
    changes: dict[str, Any] = {"appid": fake.appid, "secret": fake.secret, "api_base": fake.url}
    if settings.cache is None:
        # The fake's tokens die with the process: keep them out of the shared filesystem cache.
        changes["cache"] = "simple"
    if name == "default":
        for key, value in changes.items():
            app.config["WXMP_" + key.upper()] = value
    return dataclasses.replace(settings, **changes)


def register(app: Flask, state: AppState) -> None:
    """Mount the sandbox and status pages that the settings enable (called by ``init_app``)."""
    if state.settings.status:
        from .status import register as register_status

        register_status(app, state)
    sandboxes: dict[str, Sandbox] = app.extensions.get("wxmp.sandboxes", {})
    if state.settings.status or sandboxes:
        app.register_blueprint(_assets())
    if not sandboxes:
        return
    for name, sandbox in sandboxes.items():
        account = state.accounts[name]
        sandbox.name = name
        sandbox.settings = account.settings
        sandbox.callback = _private_callback(app, account)
        signals.handler_failed.connect(sandbox._handler_failed, sender=state.sender, weak=False)
    # The page's default conversation: the default account's (or the first sandboxed one's).
    app.extensions["wxmp.sandbox"] = sandboxes.get(state.default.name) or next(iter(sandboxes.values()))
    app.register_blueprint(_blueprint())
    log.info("wxmp sandbox at /wxmp/sandbox (accounts: %s)", ", ".join(sandboxes))


def _private_callback(app: Flask, account: Account) -> Callback:
    """The sandbox's own callback: the account's handlers, scope (app context, msg.account,
    msg.session) and slow-handler runner, signed with the sandbox's Token and key."""
    return account.make_callback(SANDBOX_TOKEN, SANDBOX_AES_KEY if account.settings.aes_key else None)


# -- the conversation ----------------------------------------------------------------------------


class Sandbox:
    """One simulated follower's conversation with the bot, and the fake WeChat behind it."""

    def __init__(
        self, fake: FakeWeChat, openid: str = SANDBOX_OPENID, account: str = SANDBOX_ACCOUNT
    ) -> None:
        self.fake = fake
        self.openid = openid
        self.account = account
        self.items: list[dict[str, Any]] = []
        self.callback: Callback | None = None
        #: The account this conversation is with, and its settings (set by :func:`register`).
        self.name = "default"
        self.settings: Settings | None = None
        self._next_id = 1
        self._lock = threading.RLock()
        self._seen = {"custom": 0, "preview": 0, "mass": 0}
        # The handler runs in a delivery thread started by act(), which copies the context.
        self._failures: ContextVar[list[Any] | None] = ContextVar("wxmp_sandbox_failures", default=None)
        fake.add_user(openid, nickname="Sandbox user")
        from .testing.fake_api.media import media

        media(fake)[SANDBOX_IMAGE] = {
            "type": "image",
            "content": _SAMPLE_SVG,
            "filename": "sample.svg",
            "content_type": "image/svg+xml",
            "created_at": time.time() + 10 * 365 * 86400,  # never expires in the fake
        }

    def __repr__(self) -> str:
        return f"<Sandbox {self.openid} on {self.fake!r}>"

    def stop(self) -> None:
        self.fake.stop()

    # -- state shown on the page ----------------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return bool(self.fake.users.get(self.openid, {}).get("subscribe"))

    def menu(self) -> list[dict[str, Any]] | None:
        """The default menu pushed to the fake (``wx.menu.create``), or None."""
        default = (self.fake.state.get("menu") or {}).get("default")
        return list(default["button"]) if default else None

    def since(self, after: int) -> list[dict[str, Any]]:
        """Items newer than id ``after``, after collecting what handlers pushed through the fake."""
        with self._lock:
            self.collect()
            out = []
            for item in self.items:
                if item.get("pending"):
                    break  # an exchange in flight: keep the order, send it and what follows later
                if item["id"] > after:
                    out.append(item)
            return out

    def _add(self, side: str, kind: str, data: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        item = {"id": self._next_id, "side": side, "kind": kind, "time": time.time(), **data, **extra}
        self._next_id += 1
        self.items.append(item)
        excess = len(self.items) - MAX_ITEMS
        if excess > 0:
            del self.items[:excess]
        return item

    # -- what handlers sent through the API -------------------------------------------------------

    def collect(self) -> None:
        """Turn new customer-service messages, previews and mass sends for our user into items."""
        from .testing.fake_api._util import LOCK

        with self._lock, LOCK:
            state = self.fake.state
            custom = state.get("custom_messages", [])
            for body in custom[self._seen["custom"] :]:
                if body.get("touser") == self.openid:
                    self._push(body, "customer service")
            self._seen["custom"] = len(custom)
            previews = state.get("mass_previews", [])
            for body in previews[self._seen["preview"] :]:
                if body.get("touser") == self.openid:
                    self._push(body, "mass preview")
            self._seen["preview"] = len(previews)
            jobs = list(state.get("mass_jobs", {}).values())
            for job in jobs[self._seen["mass"] :]:
                body = job["body"]
                to = body.get("touser")
                if job["endpoint"] == "sendall" or (isinstance(to, list) and self.openid in to):
                    self._push(body, "mass")
            self._seen["mass"] = len(jobs)
            self._trim(state)

    def _trim(self, state: dict[str, Any]) -> None:
        """Drop the fake's records beyond MAX_RECORDS (called with the fake's LOCK held)."""
        for name, seen in (("custom_messages", "custom"), ("mass_previews", "preview")):
            records = state.get(name)
            if records is not None and len(records) > MAX_RECORDS:
                cut = len(records) - MAX_RECORDS
                del records[:cut]
                self._seen[seen] = max(0, self._seen[seen] - cut)
        jobs = state.get("mass_jobs")
        if jobs is not None and len(jobs) > MAX_RECORDS:
            cut = len(jobs) - MAX_RECORDS
            for msg_id in list(jobs)[:cut]:
                del jobs[msg_id]
            self._seen["mass"] = max(0, self._seen["mass"] - cut)
        with self.fake._lock:
            excess = len(self.fake.requests) - MAX_RECORDS
            if excess > 0:
                del self.fake.requests[:excess]

    def _push(self, body: Mapping[str, Any], via: str) -> None:
        kind = body.get("msgtype", "")
        payload = body.get(kind) or {}
        if kind == "text":
            self._add("bot", "text", {"content": payload.get("content", "")}, via=via)
        elif kind in ("image", "voice"):
            self._add("bot", kind, self._media(payload.get("media_id", "")), via=via)
        elif kind == "video":
            data = {**self._media(payload.get("media_id", "")), "title": payload.get("title")}
            self._add("bot", "video", {**data, "description": payload.get("description")}, via=via)
        elif kind == "music":
            music = {
                "title": payload.get("title"),
                "description": payload.get("description"),
                "music_url": payload.get("musicurl", ""),
            }
            self._add("bot", "music", music, via=via)
        elif kind == "news":
            articles = [
                {
                    "title": a.get("title", ""),
                    "description": a.get("description", ""),
                    "pic_url": a.get("picurl", ""),
                    "url": a.get("url", ""),
                }
                for a in payload.get("articles", [])
            ]
            self._add("bot", "news", {"articles": articles}, via=via)
        elif kind == "msgmenu":
            options = [str(o.get("content", "")) for o in payload.get("list", [])]
            data = {"head": payload.get("head_content", ""), "options": options}
            self._add("bot", "msgmenu", {**data, "tail": payload.get("tail_content", "")}, via=via)
        else:
            self._add("bot", "note", {"content": f"[{kind} message]"}, via=via)

    def _media(self, media_id: str) -> dict[str, Any]:
        return {"media_id": media_id, "src": _media_url(media_id)}

    # -- actions --------------------------------------------------------------------------------

    def act(self, app: Flask, action: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Perform one user action through the callback; return the new items."""
        msg_type, fields, shown = _action(action)
        from .testing.user import WeChatUser

        callback = self.callback
        if callback is None:
            abort(404)
        settings = self.settings or app.extensions["wxmp"].state(app).settings
        wire: dict[str, Any] = {}
        user = WeChatUser(
            _recording(callback, wire),
            SANDBOX_TOKEN,
            aes_key=SANDBOX_AES_KEY if callback.crypto is not None else None,
            appid=callback.appid if callback.crypto is not None else None,
            openid=self.openid,
            account=self.account,
            path=callback.path,
        )
        with self._lock:
            first = self._next_id
            if msg_type == "event" and fields.get("Event") in ("subscribe", "unsubscribe"):
                self._follow(fields["Event"] == "subscribe")
            xml = user.message_xml(msg_type, fields)
            self.collect()  # anything pushed before this exchange goes first
            mine = self._add("user", shown.pop("kind"), shown, pending=True)
        exchange: dict[str, Any] = {"request_xml": xml.decode(), "encrypted": user.mode != "plain"}
        reply: Reply | None = None
        failures: list[Any] = []
        caught_token = self._failures.set(failures)
        try:
            result = _deliver(user, xml, settings, exchange)  # WeChat's 5 s rule (wxmp.slow)
            exchange["status"] = result.status
            exchange["response_wire"] = result.text
            if result.status == 200:
                body = result.body
                if is_envelope(body) and user.crypto is not None:
                    body = user.crypto.decrypt_reply(body, user.token)
                exchange["response_xml"] = body.decode("utf-8", "replace")
                reply = parse_reply(body).reply
            else:
                exchange["error"] = (
                    result.text
                    if result.status == 504
                    else f"the callback answered {result.status}: {result.text[:200]}"
                )
        except Exception as exc:  # shown in the page rather than lost in a 500
            log.exception("wxmp sandbox exchange failed")
            exchange["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            self._failures.reset(caught_token)
        if failures:
            exchange["handler_error"] = failures[0]
        exchange["query"] = wire.get("query", "")
        if user.mode != "plain":
            exchange["request_wire"] = wire.get("body", b"").decode("utf-8", "replace")
        with self._lock:
            mine["exchange"] = exchange
            del mine["pending"]
            self.collect()  # customer-service messages sent by the handler arrive before its reply
            if "handler_error" in exchange:
                self._add("system", "error", {"content": exchange["handler_error"]})
            if "error" in exchange:
                self._add("system", "error", {"content": exchange["error"]})
            elif reply is not None:
                rendered = self._render(reply)
                if rendered is not None:
                    self._add("bot", rendered.pop("kind"), rendered, via="reply")
            return [item for item in self.items if item["id"] >= first]

    def _handler_failed(self, sender: object, message: Any = None, exception: Any = None, **kw: Any) -> None:
        caught = self._failures.get()
        if caught is not None:
            what = f"{type(exception).__name__}: {exception}"[:300]
            caught.append(f"The handler raised {what} (traceback in the server log); WeChat got 'success'")

    def _follow(self, on: bool) -> None:
        from .testing.fake_api._util import LOCK

        with LOCK:
            user = self.fake.users.get(self.openid)
            if user is None:
                self.fake.add_user(self.openid, nickname="Sandbox user")
            else:
                user["subscribe"] = 1 if on else 0

    def _render(self, reply: Reply) -> dict[str, Any] | None:
        if isinstance(reply, TextReply):
            return {"kind": "text", "content": reply.content}
        if isinstance(reply, (ImageReply, VoiceReply)):
            return {"kind": reply.msg_type, **self._media(reply.media_id)}
        if isinstance(reply, VideoReply):
            data = self._media(reply.media_id)
            return {"kind": "video", **data, "title": reply.title, "description": reply.description}
        if isinstance(reply, MusicReply):
            return {
                "kind": "music",
                "title": reply.title,
                "description": reply.description,
                "music_url": reply.music_url,
            }
        if isinstance(reply, NewsReply):
            articles = [dataclasses.asdict(a) for a in reply.articles]
            return {"kind": "news", "articles": articles}
        if isinstance(reply, TransferCustomerServiceReply):
            return {"kind": "note", "content": "(transferred to customer service)"}
        return None


def _deliver(user: Any, xml: bytes, settings: Settings, exchange: dict[str, Any]) -> Any:
    """POST ``xml`` as WeChat would: each attempt waits WeChat's timeout, then WeChat retries.

    The attempts go to ``exchange["attempts"]``; with none answered in time the result is a 504
    whose text is what WeChat shows the user (see :meth:`WeChatUser.deliver`).
    """
    from .testing.user import SERVICE_FAILURE, HttpResult

    timeout = settings.slow_wechat_timeout
    delivery = user.deliver(xml, timeout=timeout, attempts=settings.slow_attempts)
    exchange["attempts"] = [
        {"number": a.number, "status": a.status, "timeout": timeout} for a in delivery.attempts
    ]
    answered = delivery.answered
    if answered is None:
        note = f"WeChat got no answer within {timeout:g} s on any of {len(delivery.attempts)} attempts"
        return HttpResult(504, f"{SERVICE_FAILURE} ({note})".encode())
    return HttpResult(200, answered.body)


def _recording(wsgi_app: Any, into: dict[str, Any]) -> Any:
    """``wsgi_app`` behind a shim that keeps the request as it went over the "wire"."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        into["body"], into["query"] = body, environ.get("QUERY_STRING", "")
        return wsgi_app(environ, start_response)

    return app


def _text(action: Mapping[str, Any], name: str, default: str = "", limit: int = 2048) -> str:
    value = action.get(name, default)
    if not isinstance(value, str):
        value = str(value)
    return value[:limit]


def _number(action: Mapping[str, Any], name: str, default: float) -> float:
    try:
        return float(action.get(name, default))
    except (TypeError, ValueError):
        abort(400, f"{name} must be a number")


def _action(action: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(MsgType, XML fields, the item shown for the user) for a page action."""
    kind = action.get("action")
    if kind == "text":
        content = _text(action, "content")
        if not content.strip():
            abort(400, "empty message")
        return "text", {"Content": content}, {"kind": "text", "content": content}
    if kind == "location":
        lat, lng = _number(action, "lat", 23.134521), _number(action, "lng", 113.358803)
        label = _text(action, "label", "", 200)
        fields = {"Location_X": lat, "Location_Y": lng, "Scale": 15, "Label": label}
        return "location", fields, {"kind": "location", "lat": lat, "lng": lng, "label": label}
    if kind == "image":
        fields = {"PicUrl": "http://mmbiz.qpic.cn/sandbox.jpg", "MediaId": SANDBOX_IMAGE}
        return "image", fields, {"kind": "image", "media_id": SANDBOX_IMAGE, "src": _media_url(SANDBOX_IMAGE)}
    if kind in ("subscribe", "unsubscribe"):
        label = "You followed the account" if kind == "subscribe" else "You unfollowed the account"
        return "event", {"Event": kind}, {"kind": "event", "content": label}
    key = _text(action, "key", "", 1024)
    name = _text(action, "name", key, 200)
    if kind == "click":
        return "event", {"Event": "CLICK", "EventKey": key}, {"kind": "event", "content": f"Tapped {name}"}
    if kind == "view":
        shown = {"kind": "event", "content": f"Opened {name}: {key}"}
        return "event", {"Event": "VIEW", "EventKey": key}, shown
    if kind in ("scancode_push", "scancode_waitmsg"):
        info: dict[str, Any] = {
            "ScanType": "qrcode",
            "ScanResult": _text(action, "result", "sandbox-scan", 512),
        }
        shown = {"kind": "event", "content": f"Scanned with {name}"}
        return "event", {"Event": kind, "EventKey": key, "ScanCodeInfo": info}, shown
    if kind == "location_select":
        info = {"Location_X": 23.134521, "Location_Y": 113.358803, "Scale": 15, "Label": "", "Poiname": ""}
        shown = {"kind": "event", "content": f"Picked a location with {name}"}
        return "event", {"Event": kind, "EventKey": key, "SendLocationInfo": info}, shown
    if kind in ("pic_sysphoto", "pic_photo_or_album", "pic_weixin"):
        pics = {"Count": 1, "PicList": {"item": {"PicMd5Sum": "1b5f7c23b5bf75682a53e7b6d163e185"}}}
        shown = {"kind": "event", "content": f"Sent a photo with {name}"}
        return "event", {"Event": kind, "EventKey": key, "SendPicsInfo": pics}, shown
    abort(400, f"unknown action {kind!r}")


def _media_url(media_id: str) -> str:
    """The page's link to a media file of the conversation's own fake WeChat (``?account=`` kept)."""
    account = request.args.get("account")
    if account:
        return url_for("wxmp_sandbox.media", media_id=media_id, account=account)
    return url_for("wxmp_sandbox.media", media_id=media_id)


# -- the blueprint ---------------------------------------------------------------------------------


def _sandbox() -> Sandbox:
    """The conversation the request is about: ``?account=NAME``, else the default one."""
    sandboxes: dict[str, Sandbox] = current_app.extensions.get("wxmp.sandboxes", {})
    name = request.args.get("account")
    sandbox = sandboxes.get(name) if name else current_app.extensions.get("wxmp.sandbox")
    if sandbox is None:
        abort(404)
    return sandbox


def _blueprint() -> Blueprint:
    bp = Blueprint("wxmp_sandbox", __name__, url_prefix="/wxmp", template_folder=str(templates_dir()))

    @bp.before_request
    def guard() -> None:
        from .status import local_request

        if not local_request():
            abort(403)

    @bp.get("/sandbox")
    def page() -> str:
        sandbox = _sandbox()
        settings = sandbox.settings or current_app.extensions["wxmp"].state(current_app).settings
        return render_template(
            "wxmp_sandbox.html",
            openid=sandbox.openid,
            encrypted=bool(settings.aes_key),
            callback_path=settings.callback_path,
            status=settings.status,
            account=sandbox.name,
            accounts=list(current_app.extensions.get("wxmp.sandboxes", {})),
        )

    @bp.get("/sandbox/api/poll")
    def poll() -> Any:
        sandbox = _sandbox()
        after = request.args.get("after", 0, type=int)
        return jsonify(
            items=sandbox.since(after),
            menu=sandbox.menu(),
            subscribed=sandbox.subscribed,
            openid=sandbox.openid,
        )

    @bp.post("/sandbox/api/send")
    def send() -> Any:
        action = request.get_json(silent=True)  # JSON only: a cross-site form cannot post here
        if not isinstance(action, dict):
            abort(400, "expected a JSON object")
        sandbox = _sandbox()
        items = sandbox.act(current_app._get_current_object(), action)  # type: ignore[attr-defined]
        return jsonify(items=items, menu=sandbox.menu(), subscribed=sandbox.subscribed)

    @bp.get("/sandbox/media/<media_id>")
    def media(media_id: str) -> Any:
        from .testing.fake_api.media import materials
        from .testing.fake_api.media import media as temporary

        fake = _sandbox().fake
        item = temporary(fake).get(media_id) or materials(fake).get(media_id)
        if item is None or not item.get("content"):
            abort(404)
        kind = item.get("content_type") or "application/octet-stream"
        return current_app.response_class(item["content"], mimetype=kind)

    return bp


def _assets() -> Blueprint:
    """The CSS and JS of the pages, served from the templates folder (no build step, no CDN)."""
    bp = Blueprint("wxmp_assets", __name__, url_prefix="/wxmp")

    @bp.get("/assets/<name>")
    def asset(name: str) -> Any:
        if name not in _ASSETS:
            abort(404)
        data = (templates_dir() / name).read_bytes()
        response = current_app.response_class(data, mimetype=_ASSETS[name])
        response.headers["Cache-Control"] = "no-cache"
        return response

    return bp
