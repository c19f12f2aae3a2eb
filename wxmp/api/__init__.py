"""Resource groups of the WeChat API: thin classes that describe endpoints and shape payloads.

HTTP, JSON, the token, errors and retry stay in :class:`wxmp.client.ApiClient`; each group only
names a path and builds a body. Reach them through an account (``acct.menu``) or the Flask
extension (``wx.menu``); :data:`GROUPS` lists them, for the sync and the async client alike.
"""

from ._base import ApiGroup

__all__ = ["GROUPS", "ApiGroup"]

#: attribute -> (module, class) of each resource group, imported on first use.
GROUPS: dict[str, tuple[str, str]] = {
    "user": ("wxmp.api.user", "UserAPI"),
    "menu": ("wxmp.api.menu", "MenuAPI"),
    "message": ("wxmp.api.message", "MessageAPI"),
    "tag": ("wxmp.api.tag", "TagAPI"),
    "mass": ("wxmp.api.mass", "MassAPI"),
    "template": ("wxmp.api.template", "TemplateAPI"),
    "media": ("wxmp.api.media", "MediaAPI"),
    "qrcode": ("wxmp.api.qrcode", "QRCodeAPI"),
    "jssdk": ("wxmp.api.jssdk", "JSSDKAPI"),
    "oauth": ("wxmp.api.oauth", "OAuthAPI"),
    "misc": ("wxmp.api.misc", "MiscAPI"),
    "draft": ("wxmp.api.draft", "DraftAPI"),
    "freepublish": ("wxmp.api.freepublish", "FreePublishAPI"),
    "notice": ("wxmp.api.notice", "NoticeAPI"),
    "kf": ("wxmp.api.kf", "KfAPI"),
    "datacube": ("wxmp.api.datacube", "DatacubeAPI"),
}
