"""Template messages (模板消息, verified service accounts): ``wx.template``.

The 2023 rules (developers.weixin.qq.com/doc/offiaccount/Message_Management/Template_Message_Interface.html,
announcement of 2023-03): templates come from the category library and are added with their keyword
names (``keyword_name_list``); keys are typed (``thing1``, ``time2``, ``character_string3``...) and
each type limits its value (``thing`` at most 20 characters, ``character_string`` 32, no line
breaks...). ``first`` and ``remark`` are no longer shown and ``color`` is ignored: wxmp still sends
them if given, but they change nothing. :func:`check_values` applies the value rules before the call
(also for subscription notices, which share them) and raises
:class:`~wxmp.errors.TemplateDataError` (47003) naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import TemplateDataError
from ._base import ApiGroup

__all__ = ["VALUE_RULES", "TemplateAPI", "check_values", "template_data"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_KEY = re.compile(r"^([a-z_]+?)(\d*)$")


def _limit(n: int, pattern: str | None = None, what: str = "") -> Callable[[str], str | None]:
    matcher = re.compile(pattern) if pattern else None

    def check(value: str) -> str | None:
        if len(value) > n:
            return f"{len(value)} characters; at most {n}"
        if matcher is not None and not matcher.fullmatch(value):
            return f"must be {what}"
        return None

    return check


def _symbol(value: str) -> str | None:
    if len(value) > 5:
        return f"{len(value)} characters; at most 5"
    return "must be symbols only" if _ALNUM.search(value) or _CJK.search(value) else None


def _name(value: str) -> str | None:
    top = 10 if _CJK.search(value) else 20  # 10 Chinese characters, or 20 letters
    return f"{len(value)} characters; at most {top}" if len(value) > top else None


#: Value rule per key type (the key without its number: ``thing1`` -> ``thing``), from
#: "订阅消息参数值内容限制说明" / the 2023 template rules. A check returns what is wrong, or None.
VALUE_RULES: dict[str, Callable[[str], str | None]] = {
    "thing": _limit(20),
    "number": _limit(32, r"\d+(\.\d+)?", "digits (a decimal point allowed)"),
    "letter": _limit(32, r"[A-Za-z]+", "letters only"),
    "symbol": _symbol,
    "character_string": _limit(32, r"[\x21-\x7e]+", "letters, digits or symbols"),
    "time": _limit(64, r"[0-9年月日:： \-/.~]+", "a time such as 15:01 or 2019年10月1日 15:01"),
    "date": _limit(64, r"[0-9年月日:： \-/.~]+", "a date such as 2019年10月1日"),
    "amount": _limit(16, r"[¥￥$€£]?\d{1,10}(\.\d+)?元?", "a currency sign, up to 10 digits, optional 元"),
    "phone_number": _limit(17, r"[0-9+\-() ]+", "digits and symbols"),
    "car_number": _limit(8),
    "name": _name,
    "phrase": _limit(5, r"[\u3400-\u9fff]+", "Chinese characters only"),
}


def check_values(data: Mapping[str, Mapping[str, Any]], path: str = "") -> None:
    """Apply :data:`VALUE_RULES` to shaped ``data``; raise TemplateDataError (47003) naming the key.

    Keys of unknown types (old templates' ``keyword1``, ``first``, ``remark``) are not checked
    beyond line breaks, which no value may contain.
    """
    for key, item in data.items():
        value = str(item.get("value", ""))
        if "\n" in value or "\r" in value:
            raise TemplateDataError(47003, f"data.{key}: line breaks are not allowed", path)
        found = _KEY.match(key)
        rule = VALUE_RULES.get(found.group(1)) if found else None
        problem = rule(value) if rule is not None else None
        if problem:
            raise TemplateDataError(
                47003, f"data.{key}: {problem} ({found.group(1) if found else key})", path
            )


def message_body(
    openid: str, template_id: str, data: Mapping[str, Any], path: str, **optional: Any
) -> dict[str, Any]:
    """The body of a template message or a notice: data shaped and checked, empty options left out."""
    shaped = template_data(data)
    check_values(shaped, path)
    body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": shaped}
    body.update({k: v for k, v in optional.items() if v})
    return body


_Templates = list[dict[str, Any]]  # `list` is shadowed by TemplateAPI.list inside the class


def template_data(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"key": "v"}`` or ``{"key": {"value": "v", "color": ...}}`` -> WeChat's ``data`` shape."""
    shaped: dict[str, dict[str, Any]] = {}
    for key, item in data.items():
        if isinstance(item, Mapping):
            if "value" not in item:
                raise ValueError(f"template data {key!r}: a dict item needs a 'value'")
            shaped[key] = dict(item)
        else:
            shaped[key] = {"value": item if isinstance(item, str) else str(item)}
    return shaped


class TemplateAPI(ApiGroup):
    """Send template messages and manage the account's private templates."""

    def send(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, Any],
        url: str | None = None,
        miniprogram: Mapping[str, str] | None = None,
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a template message; returns ``{"msgid", ...}``: ``POST /cgi-bin/message/template/send``.

        ``miniprogram`` is ``{"appid": ..., "pagepath": ...}``; ``client_msg_id`` makes retries
        idempotent on WeChat's side. Values are checked with :func:`check_values` first.
        """
        path = "/cgi-bin/message/template/send"
        body = message_body(openid, template_id, data, path, url=url, client_msg_id=client_msg_id)
        if miniprogram:
            body["miniprogram"] = dict(miniprogram)
        return self.client.post(path, body)

    def list(self) -> _Templates:
        """The private templates (``template_list``): ``GET /cgi-bin/template/get_all_private_template``."""
        return self.client.get(
            "/cgi-bin/template/get_all_private_template", then=lambda r: r.get("template_list", [])
        )

    def delete(self, template_id: str) -> dict[str, Any]:
        """Remove a private template: ``POST /cgi-bin/template/del_private_template``."""
        return self.client.post("/cgi-bin/template/del_private_template", {"template_id": template_id})

    def add(self, template_id_short: str, keyword_name_list: Sequence[str] = ()) -> str:
        """Add a library template to the account and return its template_id:
        ``POST /cgi-bin/template/api_add_template``.

        Since 2023 templates of the new categories need ``keyword_name_list``: the names of the
        keywords to use, as the library lists them (e.g. ``["物品名称", "购买时间"]``).
        """
        body: dict[str, Any] = {"template_id_short": template_id_short}
        if keyword_name_list:
            body["keyword_name_list"] = list(keyword_name_list)
        return self.client.post(
            "/cgi-bin/template/api_add_template", body, then=lambda r: str(r["template_id"])
        )

    def set_industry(self, industry_id1: int | str, industry_id2: int | str) -> dict[str, Any]:
        """Set the account's primary and secondary industries (once a month):
        ``POST /cgi-bin/template/api_set_industry``.
        """
        body = {"industry_id1": str(industry_id1), "industry_id2": str(industry_id2)}
        return self.client.post("/cgi-bin/template/api_set_industry", body)

    def get_industry(self) -> dict[str, Any]:
        """``{"primary_industry": {"first_class", "second_class"}, "secondary_industry": ...}``:
        ``GET /cgi-bin/template/get_industry``.
        """
        return self.client.get("/cgi-bin/template/get_industry")
