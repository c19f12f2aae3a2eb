"""JS-SDK: ``wx.jssdk`` signs pages for ``wx.config`` with the shared jsapi_ticket.

The ticket (``GET /cgi-bin/ticket/getticket?type=jsapi``) has a low quota, so it goes through
the same :class:`~wxmp.token.TokenManager` as the access_token: one copy in the shared cache,
fetched once per lifetime for the whole fleet and refreshed ahead of expiry by the refresher.

Sign the URL exactly as the browser has it (``location.href`` without ``#...``)::

    @app.get("/page/<name>")
    def page(name):
        config = wx.jssdk.config(wx.jssdk.page_url(request), api_list=["updateAppMessageShareData"])
        return render_template("page.html", wx_config=config)

Not ``request.url``: Flask decodes it, so ``/page/%E4%B8%AD%E6%96%87`` would be signed as
``/page/中文`` and WeChat's check in the browser fails (invalid signature).
"""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from ..client import Blocking, Plan
from ..errors import NetworkError
from ..token import TokenManager
from ._base import ApiGroup, plan

__all__ = ["JSSDKAPI", "page_url", "sign"]

_NONCE_CHARS = string.ascii_letters + string.digits


def sign(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature: sha1 of the four fields sorted by name, raw values (WeChat's JS-SDK 说明文档
    appendix 1, developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/JS-SDK.html)."""
    fields = {"jsapi_ticket": ticket, "noncestr": noncestr, "timestamp": str(timestamp), "url": url}
    plain = "&".join(f"{key}={fields[key]}" for key in sorted(fields))
    return hashlib.sha1(plain.encode("utf-8")).hexdigest()


#: ASCII a browser leaves as it is in a path (the URL Standard's path percent-encode set is
#: controls, space, " # < > ? ` { }; everything non-ASCII is encoded as UTF-8).
_PATH_SAFE = "!$&'()*+,-./:;=@[]^_|~"


def page_url(request: Any, base: str | None = None) -> str:
    """The URL of the current page as the browser's ``location.href`` has it, for :func:`sign`.

    ``request`` is a Flask/werkzeug request or a WSGI environ. The path and query come from the raw
    request line (``REQUEST_URI`` from werkzeug's server, ``RAW_URI`` from gunicorn), not from
    the decoded path; without one, the path is re-encoded as a browser would. ``base`` (the
    group's ``WXMP_PUBLIC_URL``) gives the scheme and host the browser uses; without it they
    come from the request, which behind a TLS-terminating proxy says ``http``.
    """
    environ: Mapping[str, Any] = getattr(request, "environ", request)
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if isinstance(raw, str) and raw.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        raw = parts.path + (f"?{parts.query}" if parts.query else "")
    if not isinstance(raw, str) or not raw.startswith("/"):
        # WSGI gives PATH_INFO as the decoded bytes read as latin-1; QUERY_STRING as sent.
        path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
        raw = quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE)
        query = environ.get("QUERY_STRING")
        if query:
            raw += "?" + str(query)
    if base is None:
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        base = f"{scheme}://{host}"
    return base.rstrip("/") + raw.split("#", 1)[0]


class JSSDKAPI(ApiGroup):
    """The shared jsapi_ticket and the ``wx.config`` parameters of a page."""

    @property
    def manager(self) -> TokenManager:
        """The TokenManager of the jsapi_ticket (created, and handed to the refresher, on first use)."""
        return self._account.token_manager("jsapi_ticket", self._fetch)

    def _fetch(self, force: bool) -> tuple[str, int]:
        # getticket has no force flag; a fresh call is the best we can do. The TokenManager is
        # synchronous, so this is the account's sync client even for the async groups.
        result = self._account.client.get("/cgi-bin/ticket/getticket", {"type": "jsapi"})
        try:
            return str(result["ticket"]), int(result["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise NetworkError("/cgi-bin/ticket/getticket", "answer without ticket/expires_in")

    @property
    def ticket(self) -> str:
        """A valid jsapi_ticket from the shared cache: ``GET /cgi-bin/ticket/getticket`` when due."""
        return self.manager.get()

    def page_url(self, request: Any) -> str:
        """The current page's URL as the browser has it (see :func:`page_url`), on ``WXMP_PUBLIC_URL``."""
        return page_url(request, self.settings.public_url)

    @plan
    def config(
        self,
        url: str,
        api_list: Sequence[str] = (),
        debug: bool = False,
        open_tag_list: Sequence[str] = (),
    ) -> Plan[dict[str, Any]]:
        """The dict a page passes to ``wx.config`` for ``url`` (its ``#fragment`` is dropped).

        Keys: appId, timestamp, nonceStr, signature, jsApiList, debug (and openTagList when given).
        Uses the shared ticket (``GET /cgi-bin/ticket/getticket`` only when it is due).
        """
        url = url.split("#", 1)[0]
        ticket = yield Blocking(self.manager.get)
        timestamp = int(time.time())
        nonce = "".join(secrets.choice(_NONCE_CHARS) for _ in range(16))
        config: dict[str, Any] = {
            "debug": debug,
            "appId": self.settings.appid,
            "timestamp": timestamp,
            "nonceStr": nonce,
            "signature": sign(ticket, nonce, timestamp, url),
            "jsApiList": list(api_list),
        }
        if open_tag_list:
            config["openTagList"] = list(open_tag_list)
        return config
