"""Menus: ``wx.menu`` (``/cgi-bin/menu/*``).

:meth:`MenuAPI.create` checks the menu against WeChat's limits (WeChat's 自定义菜单 and 客服消息 pages)
before any request,
so a typo costs a ``ValueError`` naming the button instead of a bare errcode 40016..40027.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._base import ApiGroup

__all__ = ["BUTTON_FIELDS", "RETIRED_MATCH_FIELDS", "MenuAPI", "validate_menu"]

#: The fields each button type needs besides ``name`` (WeChat's 自定义菜单创建接口,
#: developers.weixin.qq.com/doc/offiaccount/Custom_Menus/Creating_Custom-Defined_Menu.html).
BUTTON_FIELDS: dict[str, tuple[str, ...]] = {
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

MAX_BUTTONS = 3
MAX_SUB_BUTTONS = 5
MAX_NAME = 16  # bytes, top level
MAX_SUB_NAME = 60  # bytes, second level (old docs: 40)
MAX_KEY = 128  # bytes
MAX_URL = 1024  # bytes (old docs: 256)

#: matchrule fields WeChat refuses since its privacy changes (65320); ``group_id`` is tag_id's old name.
RETIRED_MATCH_FIELDS = frozenset({"sex", "country", "province", "city", "language"})

MenuLike = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def _size(value: Any) -> int:
    return len(str(value).encode("utf-8"))


def _buttons(menu: MenuLike) -> list[Mapping[str, Any]]:
    if isinstance(menu, Mapping):
        if "button" not in menu:
            raise ValueError("menu: expected {'button': [...]} or a list of buttons")
        menu = menu["button"]
    if isinstance(menu, (str, bytes)) or not isinstance(menu, Sequence):
        raise ValueError("menu: 'button' must be a list of buttons")
    return list(menu)


def _check_leaf(button: Mapping[str, Any], where: str) -> None:
    kind = button.get("type")
    if not kind:
        raise ValueError(f"{where}: needs a type or a non-empty sub_button list")
    needs = BUTTON_FIELDS.get(kind)
    if needs is None:
        raise ValueError(f"{where}: unknown type {kind!r} (one of {', '.join(sorted(BUTTON_FIELDS))})")
    for field in needs:
        if button.get(field) in (None, ""):
            raise ValueError(f"{where}: {kind} needs {field}")
    if "key" in button and _size(button["key"]) > MAX_KEY:
        raise ValueError(f"{where}: key is {_size(button['key'])} bytes, more than {MAX_KEY}")
    if "url" in button and _size(button["url"]) > MAX_URL:
        raise ValueError(f"{where}: url is {_size(button['url'])} bytes, more than {MAX_URL}")


def _check_name(button: Mapping[str, Any], where: str, limit: int) -> None:
    name = button.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: needs a name")
    if _size(name) > limit:
        raise ValueError(f"{where}: name is {_size(name)} bytes in UTF-8, more than {limit}")


def validate_menu(menu: MenuLike) -> list[dict[str, Any]]:
    """Check ``menu`` against WeChat's rules; return its buttons or raise ValueError naming one.

    Positions count from 0: ``button[1].sub_button[2] 'Foo': click needs key``.
    """
    buttons = _buttons(menu)
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise ValueError(f"menu: {len(buttons)} buttons; WeChat allows 1 to {MAX_BUTTONS}")
    for i, button in enumerate(buttons):
        if not isinstance(button, Mapping):
            raise ValueError(f"button[{i}]: expected a dict, got {type(button).__name__}")
        where = f"button[{i}] {button.get('name')!r}"
        _check_name(button, where, MAX_NAME)
        subs = button.get("sub_button") or []
        if isinstance(subs, Mapping):  # the shape get_current_selfmenu_info returns
            subs = subs.get("list") or []
        if not subs:
            _check_leaf(button, where)
            continue
        if len(subs) > MAX_SUB_BUTTONS:
            raise ValueError(f"{where}: {len(subs)} sub-buttons; WeChat allows at most {MAX_SUB_BUTTONS}")
        for j, sub in enumerate(subs):
            if not isinstance(sub, Mapping):
                raise ValueError(f"button[{i}].sub_button[{j}]: expected a dict, got {type(sub).__name__}")
            sub_where = f"button[{i}].sub_button[{j}] {sub.get('name')!r}"
            _check_name(sub, sub_where, MAX_SUB_NAME)
            if sub.get("sub_button"):
                raise ValueError(f"{sub_where}: menus have two levels; a sub-button has no sub_button")
            _check_leaf(sub, sub_where)
    return [dict(b) for b in buttons]


class MenuAPI(ApiGroup):
    """The custom menu, conditional (personalised) menus and menu matching."""

    def create(self, menu: MenuLike) -> dict[str, Any]:
        """Replace the default menu: ``POST /cgi-bin/menu/create`` (validated locally first)."""
        return self.client.post("/cgi-bin/menu/create", {"button": validate_menu(menu)})

    def get(self) -> dict[str, Any]:
        """The API-set menus, default and conditional: ``GET /cgi-bin/menu/get``.

        Raises :class:`~wxmp.errors.NoMenuError` (46003) when the account has no menu; catch it
        rather than expecting None.
        """
        return self.client.get("/cgi-bin/menu/get")

    def delete(self) -> dict[str, Any]:
        """Delete every menu, conditional ones included: ``GET /cgi-bin/menu/delete``."""
        return self.client.get("/cgi-bin/menu/delete")

    def get_current(self) -> dict[str, Any]:
        """The menu in effect, set by API or website: ``GET /cgi-bin/get_current_selfmenu_info``."""
        return self.client.get("/cgi-bin/get_current_selfmenu_info")

    def add_conditional(self, menu: MenuLike, matchrule: Mapping[str, Any]) -> dict[str, Any]:
        """Add a menu for users matching ``matchrule``: ``POST /cgi-bin/menu/addconditional``.

        Returns ``{"menuid": ...}``. ``matchrule`` takes ``tag_id`` and ``client_platform_type``
        (1 iOS, 2 Android, 3 others). WeChat refuses the old privacy fields ``sex``, ``country``,
        ``province``, ``city`` and ``language`` (errcode 65320), so they are refused here first.
        """
        rule = {k: v for k, v in matchrule.items() if v not in (None, "")}
        if not rule:
            raise ValueError("matchrule: give at least one condition (tag_id, client_platform_type)")
        retired = sorted(set(rule) & RETIRED_MATCH_FIELDS)
        if retired:
            raise ValueError(
                f"matchrule: {', '.join(retired)} no longer accepted by WeChat (65320, privacy rules); "
                "use tag_id (tag the users first) or client_platform_type"
            )
        return self.client.post(
            "/cgi-bin/menu/addconditional", {"button": validate_menu(menu), "matchrule": rule}
        )

    def delete_conditional(self, menuid: str | int) -> dict[str, Any]:
        """Delete one conditional menu: ``POST /cgi-bin/menu/delconditional``."""
        return self.client.post("/cgi-bin/menu/delconditional", {"menuid": str(menuid)})

    def try_match(self, user_id: str) -> dict[str, Any]:
        """The menu ``user_id`` (openid or WeChat ID) would see: ``POST /cgi-bin/menu/trymatch``."""
        return self.client.post("/cgi-bin/menu/trymatch", {"user_id": user_id})
