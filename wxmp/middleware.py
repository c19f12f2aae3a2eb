"""The callback pipeline as a WSGI app and middleware: verify, decrypt, parse, dedup, dispatch, reply.

:class:`Callback` answers one path (``/wechat`` by default) and passes every other request to the
app it wraps, so WeChat's pushes skip the web framework's routing. It imports no Flask: an
:class:`~wxmp.account.Account` builds one (``acct.callback``), and the Flask adapter puts it in front
of ``app.wsgi_app`` with the app context entered around handlers; any WSGI app can use it directly::

    cb = Callback(token="mytoken", aes_key=..., appid="wx...", app=other_wsgi_app)

    @cb.on("text")
    def echo(msg):
        return msg.content

Answers: the handshake's ``echostr``; 403 for a bad signature, msg_signature or stale timestamp;
400 for malformed XML or an undecryptable body; 413 beyond ``max_body``; otherwise 200 with the
reply (encrypted when the push was) or ``success``. Every answer carries
``X-Content-Type-Options: nosniff`` (the handshake reflects ``echostr``).

Two rules stand between a captured query string and the handlers, because WeChat's plaintext
``signature`` covers (token, timestamp, nonce) and never the body:

- an account with an AES key accepts only encrypted pushes (``encrypt_type=aes``, any case): a
  plaintext push is refused with 403 unless ``allow_plaintext`` (``WXMP_ALLOW_PLAINTEXT``, for the
  days of a migration to safe mode) is on;
- a plaintext push's (timestamp, nonce, signature) is bound to a digest of its body on the shared
  store for the timestamp window: WeChat's retry of the same push passes, another body under the
  same signature gets 403.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from . import signals
from .cache import CacheUnavailable, SharedStore, local_cache
from .crypto import MessageCrypto, Verifier, make_nonce
from .deadline import deadline
from .dedup import Claim, Deduplicator, SignatureReused
from .dedupstore import open_store
from .dispatch import Router, settle
from .errors import CallbackError, ConfigError, DecryptError, ParseError, loggable
from .messages import Message, parse, parse_fields
from .replies import SUCCESS, TextReply, reply_for

if TYPE_CHECKING:
    from .slow import SlowRunner

__all__ = ["Callback"]

log = logging.getLogger("wxmp.callback")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
StartResponse = Callable[..., Any]

_TEXT = "text/plain; charset=utf-8"
_XML = "application/xml; charset=utf-8"
_STATUS = {
    200: "200 OK",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
}
#: WeChat waits 5 s for an answer; waits inside a handler that it does not control (for a token)
#: are cut to this (see wxmp.deadline).
HANDLER_BUDGET = 4.0


class _Refused(Exception):
    """An HTTP refusal before the handler: status, short body, log reason."""

    def __init__(self, status: int, body: str, reason: str) -> None:
        self.status = status
        self.body = body
        self.reason = reason


class Callback:
    """WeChat's callback endpoint for one account, as a WSGI app wrapping an optional other app.

    ``token`` checks signatures; ``aes_key`` + ``appid`` enable compatible and safe mode.
    ``store`` is the shared cache used for dedup (a process-local SimpleCache if omitted: give a
    shared one when several workers serve the path). ``context`` is entered around each handler
    (e.g. ``app.app_context``). ``clock`` is used for timestamps; tests inject a fixed one.
    """

    def __init__(
        self,
        token: str,
        aes_key: str | None = None,
        appid: str | None = None,
        *,
        path: str = "/wechat",
        app: WSGIApp | None = None,
        router: Router | None = None,
        store: SharedStore | None = None,
        dedup: bool = True,
        dedup_ttl: int = 300,
        timestamp_window: int = 300,
        max_body: int = 1 << 20,
        context: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        sender: object | None = None,
        clock: Callable[[], float] = time.time,
        allow_plaintext: bool = False,
    ) -> None:
        if not token:
            raise ConfigError("WXMP_TOKEN", "is required for the callback")
        if aes_key and not appid:
            raise ConfigError("WXMP_APPID", "is required when WXMP_AES_KEY is set")
        self.token = token
        self.appid = appid
        self.path = path
        self.app = app
        self.router = router if router is not None else Router()
        self.on = self.router.on
        self.verifier = Verifier(token, timestamp_window, clock)
        try:
            self.crypto = MessageCrypto(aes_key, appid) if aes_key and appid else None
        except ValueError as exc:
            raise ConfigError("WXMP_AES_KEY", str(exc)) from None
        self.max_body = max_body
        self.context = context
        self.sender = sender if sender is not None else self
        self.clock = clock
        self.allow_plaintext = allow_plaintext
        if store is None:
            store = SharedStore(local_cache(), probe=False)
        if dedup:
            self.dedup: Deduplicator | None = Deduplicator(
                store, dedup_ttl, wall_clock=clock, bind_ttl=ttl_for(timestamp_window)
            )
        else:
            self.dedup = None
        self.marks = _BodyMarks(store, timestamp_window, clock, self.dedup)
        if self.crypto is not None and allow_plaintext:
            log.warning(
                "WXMP_ALLOW_PLAINTEXT is on: %s accepts unencrypted pushes although an AES key is set; "
                "anyone holding one logged query string can post bodies of their choice. Turn it off "
                "once the account is in safe mode.",
                path,
            )
        #: Runs the slow handlers (wxmp.slow); an Account sets one that can use its API.
        self.slow: SlowRunner | None = None

    def __repr__(self) -> str:
        mode = "aes" if self.crypto else "plaintext"
        return f"<Callback {self.path} {mode} appid={self.appid!r}>"

    def wrap(self, app: WSGIApp) -> Callback:
        """Serve every other path with ``app``; returns self (``app.wsgi_app = cb.wrap(app.wsgi_app)``)."""
        self.app = app
        return self

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != self.path:
            if self.app is not None:
                return self.app(environ, start_response)
            return _answer(start_response, 404, _TEXT, b"not found")
        method = environ.get("REQUEST_METHOD")
        try:
            if method == "POST":
                content_type, body = self._post(environ)
            elif method == "GET":
                content_type, body = _TEXT, self._handshake(environ)
            else:
                raise _Refused(405, "method not allowed", f"method {method}")
        except _Refused as r:
            self._refused(environ, r.status, r.reason)
            return _answer(start_response, r.status, _TEXT, r.body.encode())
        return _answer(start_response, 200, content_type, body)

    def _refused(self, environ: dict[str, Any], status: int, reason: str) -> None:
        remote = environ.get("REMOTE_ADDR", "?")
        log.warning("wxmp callback refused (%d): %s, from %s", status, reason, remote)
        if status == 403 and signals.signature_refused.receivers:
            signals.signature_refused.send(self.sender, reason=reason, remote_addr=remote)

    def _query(self, environ: dict[str, Any]) -> dict[str, str]:
        return _parse_query(environ.get("QUERY_STRING", ""))

    def _verify(self, query: dict[str, str]) -> None:
        try:
            self.verifier.check(query.get("signature"), query.get("timestamp"), query.get("nonce"))
        except CallbackError as exc:
            raise _Refused(403, "signature check failed", str(exc)) from None

    def _handshake(self, environ: dict[str, Any]) -> bytes:
        # Answered as text/plain with nosniff (see _answer): the body is whatever echostr says.
        # §2.1: the server-config check is always the plaintext scheme, even in safe mode.
        query = self._query(environ)
        self._verify(query)
        return query.get("echostr", "").encode()

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                size = int(length)
            except ValueError:
                raise _Refused(400, "bad request", "bad Content-Length") from None
            if size > self.max_body:
                raise _Refused(413, "body too large", f"body of {size} bytes")
            body = stream.read(size) if size > 0 else b""
        elif environ.get("wsgi.input_terminated"):
            body = stream.read(self.max_body + 1)
        else:
            body = b""
        if len(body) > self.max_body:
            raise _Refused(413, "body too large", "body over the limit")
        if not body:
            raise _Refused(400, "bad request", "empty body")
        return body

    def _post(self, environ: dict[str, Any]) -> tuple[str, bytes]:
        msg, encrypted, binding = self._receive(environ)
        reply = self.process(msg, encrypted=encrypted, binding=binding)
        return self._render(reply, encrypted)

    def _receive(self, environ: dict[str, Any]) -> tuple[Message, bool, tuple[str, bytes] | None]:
        """Verify, read, decrypt and parse a push: (message, whether it came encrypted, its binding).

        The binding of a plaintext push, ``(timestamp:nonce:signature, body)``, is for
        :meth:`process` to check: WeChat's plaintext signature does not cover the body, so a seen
        signature must never come again with another one.
        """
        query = self._query(environ)
        self._verify(query)
        body = self._read_body(environ)
        # WeChat sends encrypt_type=aes in compatible and safe modes, nothing (or raw) in plaintext.
        mode = query.get("encrypt_type", "raw").lower()
        if mode not in ("raw", "aes"):
            raise _Refused(400, "bad request", "unknown encrypt_type")
        encrypted = mode == "aes"
        binding = None
        if not encrypted:
            if self.crypto is not None and not self.allow_plaintext:
                raise _Refused(403, "encrypted push required", "plaintext push to an account with an AES key")
            triple = f"{query.get('timestamp', '')}:{query.get('nonce', '')}:{query.get('signature', '')}"
            binding = (triple, body)
        try:
            if encrypted:
                body = self._decrypt(query, body)
            msg = parse(body)
        except (ParseError, DecryptError) as exc:
            raise _Refused(400, "bad request", str(exc)) from None
        if signals.message_received.receivers:
            signals.message_received.send(self.sender, message=msg)
        return msg, encrypted, binding

    def _render(self, reply: str, encrypted: bool) -> tuple[str, bytes]:
        """The HTTP answer for a rendered reply: (content type, body), encrypted like the push."""
        if encrypted and reply and reply != SUCCESS:
            assert self.crypto is not None
            envelope = self.crypto.encrypt_reply(reply, self.token, str(int(self.clock())), make_nonce())
            return _XML, envelope.encode()
        if reply.startswith("<"):
            return _XML, reply.encode()
        return _TEXT, reply.encode()

    def _decrypt(self, query: dict[str, str], body: bytes) -> bytes:
        if self.crypto is None:
            raise DecryptError("encrypted push but no AES key is configured")
        encrypt = parse_fields(body).get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise ParseError("encrypted push without Encrypt")
        # §2.2: msg_signature covers the ciphertext; check it before decrypting.
        try:
            self.verifier.check(
                query.get("msg_signature"),
                query.get("timestamp"),
                query.get("nonce"),
                encrypt,
                name="msg_signature",
            )
        except CallbackError as exc:
            raise _Refused(403, "signature check failed", str(exc)) from None
        return self.crypto.decrypt(encrypt)

    def process(
        self, msg: Message, *, encrypted: bool = False, binding: tuple[str, bytes] | None = None
    ) -> str:
        """Dedup, dispatch and render: the plaintext reply for ``msg`` ("success" if none).

        ``encrypted`` says the push came encrypted: dedup keeps the two modes apart, so a reply
        recorded for an encrypted push is never answered to a plaintext one (and the reverse).
        ``binding`` (a plaintext push's, from the request) is checked first; on the filesystem it
        rides in the dedup claim's own write.
        """
        dedup = self.dedup
        if binding is not None and not self._binds_with_claim():
            self.marks.bind(*binding)
            binding = None
        # Slow handlers (wxmp.slow) keep their own claim/lease/result records; None: not theirs.
        if self.router.has_slow and (slow := self._slow_runner().process(msg)) is not None:
            return slow
        if dedup is None:
            return self._run(msg)
        key = msg.dedup_key
        mode_key = ("aes:" if encrypted else "raw:") + key  # mode_dedup_key, without a second dedup_key
        claim = self._claim(dedup, mode_key, binding)
        if not claim.run:
            if signals.duplicate_message.receivers:
                signals.duplicate_message.send(self.sender, key=key)
            return claim.reply
        if not claim.record:
            return self._run(msg)
        try:
            reply = self._run(msg)
        except BaseException:  # interrupted (worker timeout, shutdown): let the lease lapse
            dedup.release(mode_key)
            raise
        dedup.record(mode_key, reply)
        return reply

    def _binds_with_claim(self) -> bool:
        """Whether a push's binding is checked in its dedup claim (else on its own, first)."""
        return self.dedup is not None and self.dedup.binds and not self.router.has_slow

    @staticmethod
    def _claim(dedup: Deduplicator, mode_key: str, binding: tuple[str, bytes] | None) -> Claim:
        try:
            return dedup.claim(mode_key, bind=binding)
        except SignatureReused:
            raise _Refused(403, "signature check failed", "a seen signature with another body") from None

    def _slow_runner(self) -> SlowRunner:
        """The runner of the slow handlers: ``slow`` (an Account sets it), else one made on first use."""
        if self.slow is None:
            from .slow import SlowRunner

            self.slow = SlowRunner(self)
        return self.slow

    def _run(self, msg: Message) -> str:
        try:
            with self.context() if self.context is not None else contextlib.nullcontext():
                found = self.router.resolve(msg)
                if found is None:
                    value = None
                else:
                    handler, handed = found
                    with deadline(HANDLER_BUDGET):
                        value = settle(handler(handed))
                reply, value = self._reply(msg, value)
        except Exception as exc:
            return self._failed(msg, exc)
        if signals.reply_sent.receivers:
            signals.reply_sent.send(self.sender, message=msg, reply=value)
        return reply

    def _reply(self, msg: Message, value: Any) -> tuple[str, Any]:
        """A handler's return value rendered: (reply body, the reply object; a str becomes text)."""
        if isinstance(value, str):
            value = TextReply(value)
        return reply_for(msg, value, self.clock()), value

    def _failed(self, msg: Message, exc: Exception) -> str:
        """A handler raised: log it with its traceback and answer ``success`` (no retry storm)."""
        log.exception(
            "wxmp handler failed for %s from %s", loggable("/".join(msg.kinds)), loggable(msg.from_user_name)
        )
        if signals.handler_failed.receivers:
            signals.handler_failed.send(self.sender, message=msg, exception=exc)
        return SUCCESS


def mode_dedup_key(msg: Message, encrypted: bool) -> str:
    """The dedup key of ``msg`` in its mode: replies recorded for encrypted pushes and for plaintext
    ones never answer each other (WSGI and ASGI callbacks of one fleet share these keys)."""
    return ("aes:" if encrypted else "raw:") + msg.dedup_key


def _parse_query(qs: str) -> dict[str, str]:
    """A query string as a dict (first value wins); unquotes only the parts that need it."""
    out: dict[str, str] = {}
    for part in qs.split("&"):
        name, _, value = part.partition("=")
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        out.setdefault(name, value)
    return out


def _answer(start_response: StartResponse, status: int, content_type: str, body: bytes) -> list[bytes]:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"),
    ]
    start_response(_STATUS[status], headers)
    return [body]


class _BodyMarks:
    """Binds each seen plaintext (timestamp, nonce, signature) to a digest of its body.

    The mark lives on the shared store for twice the timestamp window (a signature is accepted
    while its timestamp is within the window either side of now), so it expires with the
    signature: nothing keyed by request input outlives what the signature check already bounds.
    A dead cache lets pushes through (logged at most once a minute of ``clock``), as dedup does.

    Where the dedup store can bind (filesystem, Redis) the binding rides in the dedup claim, and
    the pushes that skip the claim (dedup off, slow handlers) bind through the same store, so every
    path sees every binding. Elsewhere the shared store's ``add``/``get`` hold them.
    """

    def __init__(
        self,
        store: SharedStore,
        window: int,
        clock: Callable[[], float] = time.monotonic,
        dedup: Deduplicator | None = None,
    ) -> None:
        self.store = store
        self.ttl = ttl_for(window)
        self.clock = clock
        self._warned_at: float | None = None
        self._binder: Any = dedup.backend if dedup is not None and dedup.binds else None
        # Dedup off on the filesystem or Redis: a store of the bindings' own, made on first use.
        self._own = self._binder is None and store.backend in ("filesystem", "redis")

    @property
    def binder(self) -> Any:
        """The dedup store that holds the bindings (its ``bind`` method), or None: ``add``/``get``."""
        if self._binder is None and self._own:
            self._own = False
            own = open_store(
                SharedStore(self.store.cache, self.store.namespace + ":body", probe=False),
                self.ttl,
                bind_ttl=self.ttl,
            )
            if getattr(own, "binds", False):
                self._binder = own
        return self._binder

    def bind(self, triple: str, body: bytes) -> None:
        """Refuse (403) when ``triple`` (``timestamp:nonce:signature``) came before with another body."""
        try:
            binder = self.binder
            if binder is not None:
                if binder.bind(triple, body):
                    return
            else:
                name = "body:" + hashlib.sha256(triple.encode("utf-8")).hexdigest()
                digest = hashlib.sha256(body).hexdigest()
                if self.store.add(name, digest, self.ttl):
                    return
                if self.store.get(name) in (None, digest):
                    return
        except CacheUnavailable as exc:
            now = self.clock()
            if self._warned_at is None or now - self._warned_at >= 60:
                self._warned_at = now
                log.warning("wxmp callback: cannot bind signatures to bodies (%s); accepting pushes", exc)
            return
        raise _Refused(403, "signature check failed", "a seen signature with another body")


def ttl_for(window: int) -> int:
    """How long a signature-to-body binding lives: a signature is accepted while its timestamp is
    within ``window`` either side of now."""
    return 2 * window + 5
