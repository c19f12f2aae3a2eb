"""Subscription notices (订阅通知): ``wx.notice`` (``/cgi-bin/message/subscribe/bizsend`` and
the template library under ``/wxaapi/newtmpl/*``).

A follower accepts a notice template in a popup (``subscribe_msg_popup_event``), may change their
mind later (``subscribe_msg_change_event``), and each delivery is reported
(``subscribe_msg_sent_event``). Keys are typed like the 2023 template messages (``thing1``,
``time2``...) and their values follow the same rules, checked before the call by
:func:`wxmp.api.template.check_values`
(developers.weixin.qq.com/doc/offiaccount/Subscription_Messages/api.html).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._base import ApiGroup
from .template import message_body

__all__ = ["MAX_KEYWORDS", "MAX_SCENE_DESC", "MAX_TITLES_PAGE", "NoticeAPI"]

MAX_TITLES_PAGE = 30  # getpubtemplatetitles' limit
MIN_KEYWORDS, MAX_KEYWORDS = 2, 5  # kidList (?)
MAX_SCENE_DESC = 15  # characters

_Rows = list[dict[str, Any]]


class NoticeAPI(ApiGroup):
    """Send subscription notices and manage the account's notice templates."""

    def send(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Any],
        *,
        page: str | None = None,
        miniprogram: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send a notice the user accepted: ``POST /cgi-bin/message/subscribe/bizsend``.

        ``data`` is ``{"thing1": "...", "time2": {"value": "..."}}``; ``page`` a web URL and
        ``miniprogram`` ``{"appid", "pagepath"}`` (it wins over ``page``). A user who did not
        accept (or withdrew) the template gets errcode 43101.
        """
        path = "/cgi-bin/message/subscribe/bizsend"
        body = message_body(openid, template_id, data, path, page=page)
        if miniprogram:
            body["miniprogram"] = dict(miniprogram)
        return self.client.post(path, body)

    # -- the template library ---------------------------------------------------------------------

    def get_category(self) -> _Rows:
        """The account's categories (``[{"id", "name"}]``): ``GET /wxaapi/newtmpl/getcategory``."""
        return self.client.get("/wxaapi/newtmpl/getcategory", then=_data)

    def get_pub_titles(
        self, ids: Sequence[int | str], start: int = 0, limit: int = MAX_TITLES_PAGE
    ) -> dict[str, Any]:
        """Library templates of some categories: ``GET /wxaapi/newtmpl/getpubtemplatetitles``.

        ``{"count", "data": [{"tid", "title", "type", "categoryId"}]}``; ``limit`` is 1 to 30.
        """
        if not ids:
            raise ValueError("get_pub_titles: give at least one category id")
        if not 1 <= limit <= MAX_TITLES_PAGE:
            raise ValueError(f"limit: 1 to {MAX_TITLES_PAGE}")
        params = {"ids": ",".join(str(i) for i in ids), "start": start, "limit": limit}
        return self.client.get("/wxaapi/newtmpl/getpubtemplatetitles", params)

    def get_pub_keywords(self, tid: int | str) -> _Rows:
        """A library template's keywords (``[{"kid", "name", "example", "rule"}]``):
        ``GET /wxaapi/newtmpl/getpubtemplatekeywords``.
        """
        return self.client.get("/wxaapi/newtmpl/getpubtemplatekeywords", {"tid": tid}, then=_data)

    def add_template(self, tid: int | str, kid_list: Sequence[int], scene_desc: str = "") -> str:
        """Add a library template with 2 to 5 of its keywords; returns its ``priTmplId``:
        ``POST /wxaapi/newtmpl/addtemplate``. ``scene_desc`` (up to 15 characters) says when it is sent.
        """
        if not MIN_KEYWORDS <= len(kid_list) <= MAX_KEYWORDS:
            raise ValueError(f"kid_list: {MIN_KEYWORDS} to {MAX_KEYWORDS} keyword ids, got {len(kid_list)}")
        if len(scene_desc) > MAX_SCENE_DESC:
            raise ValueError(f"scene_desc: at most {MAX_SCENE_DESC} characters")
        body = {"tid": str(tid), "kidList": [int(k) for k in kid_list], "sceneDesc": scene_desc}
        return self.client.post("/wxaapi/newtmpl/addtemplate", body, then=lambda r: str(r["priTmplId"]))

    def get_templates(self) -> _Rows:
        """The account's notice templates (``[{"priTmplId", "title", "content", "example", "type"}]``):
        ``GET /wxaapi/newtmpl/gettemplate``.
        """
        return self.client.get("/wxaapi/newtmpl/gettemplate", then=_data)

    def delete_template(self, pri_tmpl_id: str) -> dict[str, Any]:
        """Remove a notice template: ``POST /wxaapi/newtmpl/deltemplate``."""
        return self.client.post("/wxaapi/newtmpl/deltemplate", {"priTmplId": pri_tmpl_id})


def _data(result: dict[str, Any]) -> _Rows:
    return list(result.get("data", []))
