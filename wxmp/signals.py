"""Blinker signals for observing wxmp (the same mechanism Flask uses).

Every signal is sent with the :class:`~wxmp.WxMP` extension (or the standalone ``Callback``) as
sender. Senders check ``receivers`` first, so a signal nobody listens to costs one attribute lookup.

- ``token_refreshed``: ``kind`` ("access_token", "jsapi_ticket"), ``masked`` token,
  ``expires_at`` (epoch seconds), ``host``, ``pid``.
- ``api_error``: ``errcode``, ``errmsg``, ``path``.
- ``message_received``: ``message``.
- ``reply_sent``: ``message``, ``reply`` (the reply object, or None for "success").
- ``handler_failed``: ``message``, ``exception``.
- ``signature_refused``: ``reason``, ``remote_addr``.
- ``duplicate_message``: ``key`` (a WeChat retry answered from the dedup cache).
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

token_refreshed = _signals.signal("wxmp.token-refreshed")
api_error = _signals.signal("wxmp.api-error")
message_received = _signals.signal("wxmp.message-received")
reply_sent = _signals.signal("wxmp.reply-sent")
handler_failed = _signals.signal("wxmp.handler-failed")
signature_refused = _signals.signal("wxmp.signature-refused")
duplicate_message = _signals.signal("wxmp.duplicate-message")
