"""The callback as an ASGI app: ``acct.asgi``, for uvicorn, FastAPI and Starlette.

::

    acct = Account(appid="wx...", secret="...", token="...", aes_key="...", cache="redis://...")

    @acct.on("text")
    async def reply(msg):                      # awaited on the event loop
        info = await acct.aio.user.get(msg.from_user_name)
        return f"hello {info.get('nickname', '')}"

    app = FastAPI()
    app.mount("/wechat", acct.asgi)            # or: uvicorn module:acct.asgi  (answers /wechat)

The pipeline is the WSGI :class:`~wxmp.middleware.Callback`'s, step for step: its verifier, query
parsing, decryption, parsing, router, reply rendering and encryption, and the same refusals (403 bad
signature, 400 bad body, 413 too large, 405 other methods). Only the I/O differs: the body is read
from ASGI messages, ``async def`` handlers are awaited on the loop (thousands of slow deliveries
held by one process), and plain handlers run through the WSGI callback's ``process`` in a worker
thread, exactly as under a WSGI server. Dedup uses the same shared store, in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import io
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from . import signals
from .deadline import deadline
from .middleware import _TEXT, HANDLER_BUDGET, _Refused, mode_dedup_key
from .middleware import Callback as WsgiCallback

if TYPE_CHECKING:
    from .account import Account
    from .messages import Message

__all__ = ["AsgiCallback", "Callback"]

log = logging.getLogger("wxmp.callback")

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away before the body was read."""


class AsgiCallback:
    """WeChat's callback endpoint for one account, as an ASGI app wrapping an optional other app.

    ``target`` is an :class:`~wxmp.account.Account` (its ``callback`` supplies the pipeline and
    its settings) or a WSGI :class:`~wxmp.middleware.Callback`. The app answers its callback path
    (``/wechat``) and, when mounted (``app.mount("/wechat", acct.asgi)``), the mount point itself;
    every other request goes to ``app`` if given (``acct.asgi.wrap(fastapi_app)``, which answers
    the exact callback path only), else 404.
    """

    def __init__(self, target: Account | WsgiCallback, *, app: ASGIApp | None = None) -> None:
        if isinstance(target, WsgiCallback):
            self.account: Account | None = None
            self.callback = target
        else:
            self.account = target
            self.callback = target.callback
        self.app = app

    def __repr__(self) -> str:
        return f"<AsgiCallback {self.callback!r}>"

    def wrap(self, app: ASGIApp) -> AsgiCallback:
        """Serve every other path with ``app``; returns self (``application = acct.asgi.wrap(app)``)."""
        self.app = app
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self._ours(scope):
            await self._http(scope, receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "http":
            await _answer(send, 404, _TEXT, b"not found")
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    def _ours(self, scope: Scope) -> bool:
        """The callback path; or, mounted under a prefix with nothing wrapped, the mount point."""
        # Starlette's Mount keeps the full path and extends root_path; uvicorn --root-path may not.
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == self.callback.path:
            return True
        return bool(root) and self.app is None and path in ("", "/")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.account is not None and self.account._aio is not None:
                    await self.account._aio.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- the pipeline ---------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        cb = self.callback
        method = scope["method"]
        client = scope.get("client")
        environ: dict[str, Any] = {  # what the WSGI callback's steps read
            "QUERY_STRING": scope["query_string"].decode("latin-1"),
            "REMOTE_ADDR": client[0] if client else "?",
        }
        try:
            if method == "GET":
                body = cb._handshake(environ)
                await _answer(send, 200, _TEXT, body)
                return
            if method != "POST":
                raise _Refused(405, "method not allowed", f"method {method}")
            # Refuse an unsigned push before reading its body (the WSGI order).
            cb._verify(cb._query(environ))
            environ["wsgi.input"] = io.BytesIO(await self._read_body(scope, receive))
            environ["CONTENT_LENGTH"] = str(len(environ["wsgi.input"].getvalue()))
            msg, encrypted, binding = cb._receive(environ)
            reply = await self.process(msg, encrypted=encrypted, binding=binding)
            content_type, answer = cb._render(reply, encrypted)
        except _Refused as r:
            cb._refused(environ, r.status, r.reason)
            await _answer(send, r.status, _TEXT, r.body.encode())
            return
        except _Disconnected:
            return
        await _answer(send, 200, content_type, answer)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.callback.max_body
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    raise _Refused(400, "bad request", "bad Content-Length") from None
                if size > limit:
                    raise _Refused(413, "body too large", f"body of {size} bytes")
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise _Refused(413, "body too large", "body over the limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def process(
        self, msg: Message, *, encrypted: bool = False, binding: tuple[str, bytes] | None = None
    ) -> str:
        """Dedup, dispatch and render, like ``Callback.process``: the plaintext reply for ``msg``.

        A plain handler (or none) runs the WSGI callback's own ``process`` in a thread. An
        ``async def`` handler is awaited here, between the same dedup claim and record.
        """
        cb = self.callback
        if binding is not None and not cb._binds_with_claim():
            await asyncio.to_thread(cb.marks.bind, *binding)
            binding = None
        if cb.router.has_slow:
            # Slow handlers (wxmp.slow): the delivery waits for the result on the loop, no thread held.
            slow = await cb._slow_runner().process_async(msg)
            if slow is not None:
                return slow
        found = cb.router.resolve(msg)
        if found is None or not _is_async(found[0]):
            return await asyncio.to_thread(
                functools.partial(cb.process, msg, encrypted=encrypted, binding=binding)
            )
        dedup = cb.dedup
        if dedup is None:
            return await self._run(msg, found[0], found[1])
        key = msg.dedup_key
        mode_key = mode_dedup_key(msg, encrypted)  # the WSGI callback's keys: one fleet
        claim = await asyncio.to_thread(cb._claim, dedup, mode_key, binding)
        if not claim.run:
            if signals.duplicate_message.receivers:
                signals.duplicate_message.send(cb.sender, key=key)
            return claim.reply
        try:
            reply = await self._run(msg, found[0], found[1])
        except BaseException:  # cancelled (client gone, shutdown): let the lease lapse
            if claim.record:
                await asyncio.to_thread(dedup.release, mode_key)
            raise
        if claim.record:
            await asyncio.to_thread(dedup.record, mode_key, reply)
        return reply

    async def _run(self, msg: Message, handler: Callable[[Any], Any], handed: Any) -> str:
        cb = self.callback
        try:
            with cb.context() if cb.context is not None else contextlib.nullcontext():
                with deadline(HANDLER_BUDGET):
                    value = await handler(handed)
                reply, value = cb._reply(msg, value)
        except Exception as exc:
            return cb._failed(msg, exc)
        if signals.reply_sent.receivers:
            signals.reply_sent.send(cb.sender, message=msg, reply=value)
        return reply


#: ``wxmp.asgi.Callback(acct)``: the same class under the WSGI callback's name.
Callback = AsgiCallback


def _is_async(handler: Callable[..., Any]) -> bool:
    while isinstance(handler, functools.partial):
        handler = handler.func
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


async def _answer(send: Send, status: int, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
