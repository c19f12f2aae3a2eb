"""Template messages (模板消息, verified service accounts): ``wx.template``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._base import ApiGroup

__all__ = ["TemplateAPI", "template_data"]

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
        idempotent on WeChat's side.
        """
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": template_data(data)}
        if url:
            body["url"] = url
        if miniprogram:
            body["miniprogram"] = dict(miniprogram)
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        return self.client.post("/cgi-bin/message/template/send", body)

    def list(self) -> _Templates:
        """The private templates (``template_list``): ``GET /cgi-bin/template/get_all_private_template``."""
        return self.client.get(
            "/cgi-bin/template/get_all_private_template", then=lambda r: r.get("template_list", [])
        )

    def delete(self, template_id: str) -> dict[str, Any]:
        """Remove a private template: ``POST /cgi-bin/template/del_private_template``."""
        return self.client.post("/cgi-bin/template/del_private_template", {"template_id": template_id})
