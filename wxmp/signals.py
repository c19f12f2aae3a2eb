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
- ``slow_job_finished``: ``message``, ``ok`` (a slow handler returned, or raised: see
  ``handler_failed`` for the exception).
- ``slow_result_sent``: ``message``, ``messages`` (a slow result went out through the
  customer-service API, in that many messages).
- ``customer_service_failed``: ``message``, ``errcode`` (45015, 45047, 48001..., None for a network
  error), ``errmsg``, ``sent`` (messages sent before it). Never retried; the rest is kept.
- ``slow_result_held``: ``message``, ``reason`` (a slow result kept for the user's next message).
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
slow_job_finished = _signals.signal("wxmp.slow-job-finished")
slow_result_sent = _signals.signal("wxmp.slow-result-sent")
customer_service_failed = _signals.signal("wxmp.customer-service-failed")
slow_result_held = _signals.signal("wxmp.slow-result-held")
