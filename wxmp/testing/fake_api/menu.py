"""Fake menus: create/get/delete, the current self-menu, conditional menus and trymatch.

WeChat's checks, with its error codes: ``\\uXXXX`` escapes in the body -> 40033; 1..3 buttons ->
40016; sub-buttons 1..5 -> 40023; a third level -> 40022; unknown type -> 40017/40024; names over
16/60 bytes -> 40018/40025; keys over 128 bytes -> 40019/40026; urls over 1024 bytes -> 40020/40027; a missing
field the type needs -> 40035 (WeChat's 自定义菜单创建接口,
developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Creating_Custom-Defined_Menu.html).
"""

from __future__ import annotations

import re
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, next_id, state, utf8_len

_ESCAPE = re.compile(rb"\\u[0-9a-fA-F]{4}")

# Written out here rather than imported from wxmp.api.menu on purpose: the fake stands in for
# WeChat, so a mistake in the client's table must not be mirrored by the fake (tests would pass).
_NEEDS: dict[str, tuple[str, ...]] = {
    "click": ("key",),
    "scancode_push": ("key",),
    "scancode_waitmsg": ("key",),
    "pic_sysphoto": ("key",),
    "pic_photo_or_album": ("key",),
    "pic_weixin": ("key",),
    "location_select": ("key",),
    "view": ("url",),
    "miniprogram": ("url", "appid", "pagepath"),
    "media_id": ("media_id",),
    "view_limited": ("media_id",),
    "article_id": ("article_id",),
    "article_view_limited": ("article_id",),
}

_PRIVACY_FIELDS = ("sex", "country", "province", "city", "language")

# (top-level code, sub-button code) per rule
_TYPE = (40017, 40024)
_NAME = (40018, 40025)
_KEY = (40019, 40026)
_URL = (40020, 40027)


def _menus(fake: FakeWeChat) -> dict[str, Any]:
    return state(fake, "menu", lambda: {"default": None, "conditional": []})


def _check_button(button: Any, sub: bool) -> None:
    level = 1 if sub else 0
    if not isinstance(button, dict):
        raise WeChatFault(47001, "data format error")
    name = button.get("name")
    if not isinstance(name, str) or not name or utf8_len(name) > (60 if sub else 16):
        raise WeChatFault(_NAME[level], "invalid sub button name size" if sub else "invalid button name size")
    kids = button.get("sub_button") or []
    if kids:
        if sub:
            raise WeChatFault(40022, "invalid sub menu level")
        if not 1 <= len(kids) <= 5:
            raise WeChatFault(40023, "invalid sub button size")
        for kid in kids:
            _check_button(kid, sub=True)
        return
    kind = button.get("type")
    if kind not in _NEEDS:
        raise WeChatFault(_TYPE[level], "invalid sub button type" if sub else "invalid button type")
    for field in _NEEDS[kind]:
        if not button.get(field):
            raise WeChatFault(40035, f"invalid args, {kind} button needs {field}")
    if "key" in button and utf8_len(button["key"]) > 128:
        raise WeChatFault(_KEY[level], "invalid button key size")
    if "url" in button and utf8_len(button["url"]) > 1024:
        raise WeChatFault(_URL[level], "invalid button url size")


def _checked_buttons(req: FakeRequest) -> list[dict[str, Any]]:
    if _ESCAPE.search(req.body):
        raise WeChatFault(
            40033, "invalid charset. please check your request, if include \\uxxxx will create fail!"
        )
    data = req.json
    buttons = data.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise WeChatFault(40016, "invalid button size")
    for button in buttons:
        _check_button(button, sub=False)
    return buttons


def _stored(buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Buttons as menu/get returns them: every button carries a ``sub_button`` list."""
    out = []
    for button in buttons:
        copy = {k: v for k, v in button.items() if k != "sub_button"}
        copy["sub_button"] = _stored(button.get("sub_button") or [])
        out.append(copy)
    return out


@endpoint("POST", "/cgi-bin/menu/create")
def _create(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    buttons = _checked_buttons(req)
    with LOCK:
        menus = _menus(fake)
        menus["default"] = {"button": _stored(buttons), "menuid": next_id(fake, "menu", 100)}
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/cgi-bin/menu/get")
def _get(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    menus = _menus(fake)
    if menus["default"] is None:
        raise WeChatFault(46003, "menu no exist")
    result: dict[str, Any] = {"menu": menus["default"]}
    if menus["conditional"]:
        result["conditionalmenu"] = list(menus["conditional"])
    return result


@endpoint("GET", "/cgi-bin/menu/delete")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        fake.state["menu"] = {"default": None, "conditional": []}
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/cgi-bin/get_current_selfmenu_info")
def _current(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    menu = _menus(fake)["default"]
    if menu is None:
        return {"is_menu_open": 0}

    def shape(button: dict[str, Any]) -> dict[str, Any]:
        # This endpoint nests sub-buttons as {"list": [...]} (WeChat's 自定义菜单创建接口,
        # developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Creating_Custom-Defined_Menu.html).
        copy = {k: v for k, v in button.items() if k != "sub_button"}
        if button.get("sub_button"):
            copy["sub_button"] = {"list": [shape(b) for b in button["sub_button"]]}
        return copy

    return {"is_menu_open": 1, "selfmenu_info": {"button": [shape(b) for b in menu["button"]]}}


@endpoint("POST", "/cgi-bin/menu/addconditional")
def _add_conditional(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    buttons = _checked_buttons(req)
    rule = req.json.get("matchrule")
    if not isinstance(rule, dict) or not any(v not in (None, "") for v in rule.values()):
        raise WeChatFault(65304, "match rule empty")
    if any(rule.get(field) not in (None, "") for field in _PRIVACY_FIELDS):
        # Refused since WeChat's privacy changes (2021-12): only tag_id and client_platform_type remain.
        raise WeChatFault(65320, "matchrule contains invalid field")
    with LOCK:
        menus = _menus(fake)
        if menus["default"] is None:
            raise WeChatFault(65303, "there is no selfmenu, please create selfmenu first")
        menuid = next_id(fake, "menu", 100)
        menus["conditional"].append({"button": _stored(buttons), "matchrule": rule, "menuid": menuid})
    return {"menuid": str(menuid)}


@endpoint("POST", "/cgi-bin/menu/delconditional")
def _del_conditional(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "menuid")
    with LOCK:
        menus = _menus(fake)
        kept = [m for m in menus["conditional"] if str(m["menuid"]) != str(data["menuid"])]
        if len(kept) == len(menus["conditional"]):
            raise WeChatFault(65301, "no such conditional menu")
        menus["conditional"] = kept
    return {"errcode": 0, "errmsg": "ok"}


def _matches(rule: dict[str, Any], user: dict[str, Any]) -> bool:
    tag = rule.get("tag_id") or rule.get("group_id")
    if tag not in (None, "") and int(tag) not in [int(t) for t in user.get("tagid_list", [])]:
        return False
    # A user's platform: set "client_platform_type" (1 iOS, 2 Android, 3 others) on the fake user.
    platform = rule.get("client_platform_type")
    return platform in (None, "") or str(user.get("client_platform_type", "")) == str(platform)


@endpoint("POST", "/cgi-bin/menu/trymatch")
def _try_match(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "user_id")
    user = fake.users.get(data["user_id"])
    if user is None:
        raise WeChatFault(65302, "no such user")
    menus = _menus(fake)
    if menus["default"] is None:
        raise WeChatFault(46003, "menu no exist")
    # The newest matching conditional menu wins, else the default one.
    for menu in reversed(menus["conditional"]):
        if _matches(menu["matchrule"], user):
            return {"button": menu["button"]}
    return {"button": menus["default"]["button"]}
