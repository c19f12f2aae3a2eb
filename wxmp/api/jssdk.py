"""JS-SDK: ``wx.jssdk`` signs pages for ``wx.config`` with the shared jsapi_ticket.

The ticket (``GET /cgi-bin/ticket/getticket?type=jsapi``) has a low quota, so it goes through
the same :class:`~wxmp.token.TokenManager` as the access_token: one copy in the shared cache,
fetched once per lifetime for the whole fleet and refreshed ahead of expiry by the refresher.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from collections.abc import Sequence
from typing import Any

from ..client import Blocking, Plan
from ..errors import NetworkError
from ..token import TokenManager
from ._base import ApiGroup, plan

__all__ = ["JSSDKAPI", "sign"]

_NONCE_CHARS = string.ascii_letters + string.digits


def sign(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """The JS-SDK signature: sha1 of the four fields sorted by name, raw values (wechat-api.md §5.9)."""
    fields = {"jsapi_ticket": ticket, "noncestr": noncestr, "timestamp": str(timestamp), "url": url}
    plain = "&".join(f"{key}={fields[key]}" for key in sorted(fields))
    return hashlib.sha1(plain.encode("utf-8")).hexdigest()


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
