"""Resource groups of the WeChat API: thin classes that describe endpoints and shape payloads.

HTTP, JSON, the token, errors and retry stay in :class:`wxmp.client.ApiClient`; each group only
names a path and builds a body. Reach them through the extension: ``wx.menu``, ``wx.user``...
"""

from ._base import ApiGroup

__all__ = ["ApiGroup"]
