"""Customer-service accounts and sessions (客服): ``wx.kf`` (``/customservice/*`` and the two lists
under ``/cgi-bin/customservice/*``).

An agent account is ``prefix@gh_wechat_id`` (prefix: up to 10 letters and digits), bound to a
person's WeChat by invitation. Sessions connect a follower to an agent; WeChat reports them with the
``kf_create_session``, ``kf_close_session`` and ``kf_switch_session`` events. Messages to the
follower go through ``wx.message`` with ``kf_account=`` (and count against the reply quotas, see
:mod:`wxmp.api.message`). Paths and fields from developers.weixin.qq.com/doc/offiaccount/
Customer_Service/Customer_Service_Management.html and .../Session_control.html.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..client import Plan
from ._base import ApiGroup, plan
from .media import FileLike, _upload_steps

__all__ = ["MAX_NICKNAME", "KfAPI", "check_kf_account"]

MAX_NICKNAME = 16  # characters (?)
_Rows = list[dict[str, Any]]  # `list` is shadowed by KfAPI.list inside the class
_ACCOUNT = re.compile(r"^[A-Za-z0-9]{1,10}@[A-Za-z0-9_-]+$")


def check_kf_account(kf_account: str) -> str:
    """``prefix@gh_wechat_id`` with a prefix of 1 to 10 letters and digits, or ValueError."""
    if not isinstance(kf_account, str) or not _ACCOUNT.match(kf_account):
        raise ValueError(
            f"kf_account {kf_account!r}: 'prefix@account_wechat_id', prefix 1 to 10 letters/digits"
        )
    return kf_account


def _nickname(nickname: str) -> str:
    if not nickname or len(nickname) > MAX_NICKNAME:
        raise ValueError(f"nickname: 1 to {MAX_NICKNAME} characters")
    return nickname


class KfAPI(ApiGroup):
    """Agent accounts (add, update, delete, invite, head image, lists) and sessions."""

    # -- accounts ---------------------------------------------------------------------------------

    def add(self, kf_account: str, nickname: str) -> dict[str, Any]:
        """Create an agent account (at most 100): ``POST /customservice/kfaccount/add``."""
        body = {"kf_account": check_kf_account(kf_account), "nickname": _nickname(nickname)}
        return self.client.post("/customservice/kfaccount/add", body)

    def update(self, kf_account: str, nickname: str) -> dict[str, Any]:
        """Rename an agent: ``POST /customservice/kfaccount/update``."""
        body = {"kf_account": check_kf_account(kf_account), "nickname": _nickname(nickname)}
        return self.client.post("/customservice/kfaccount/update", body)

    def delete(self, kf_account: str) -> dict[str, Any]:
        """Delete an agent account: ``GET /customservice/kfaccount/del``."""
        return self.client.get("/customservice/kfaccount/del", {"kf_account": check_kf_account(kf_account)})

    def invite(self, kf_account: str, invite_wx: str) -> dict[str, Any]:
        """Invite a person's WeChat ID to take the account: ``POST /customservice/kfaccount/inviteworker``."""
        body = {"kf_account": check_kf_account(kf_account), "invite_wx": invite_wx}
        return self.client.post("/customservice/kfaccount/inviteworker", body)

    def upload_head_image(
        self, kf_account: str, file: FileLike, *, filename: str | None = None
    ) -> dict[str, Any]:
        """Set the agent's picture (JPG, 640x640 advised): ``POST /customservice/kfaccount/uploadheadimg``."""
        return self._upload_head_image(check_kf_account(kf_account), file, filename)

    @plan
    def _upload_head_image(
        self, kf_account: str, file: FileLike, filename: str | None
    ) -> Plan[dict[str, Any]]:
        # the file is read in a Blocking step (a thread on the async client)
        path, params = "/customservice/kfaccount/uploadheadimg", {"kf_account": kf_account}
        return (yield from _upload_steps(path, "image", file, filename, params=params))

    def list(self) -> _Rows:
        """Every agent (``kf_list``: kf_account, kf_nick, kf_id, kf_headimgurl, kf_wx or invite_*):
        ``GET /cgi-bin/customservice/getkflist``.
        """
        return self.client.get("/cgi-bin/customservice/getkflist", then=_rows("kf_list"))

    def online(self) -> _Rows:
        """Agents online now (``kf_online_list``: kf_account, status, kf_id, accepted_case):
        ``GET /cgi-bin/customservice/getonlinekflist``.
        """
        return self.client.get("/cgi-bin/customservice/getonlinekflist", then=_rows("kf_online_list"))

    # -- sessions ---------------------------------------------------------------------------------

    def create_session(self, kf_account: str, openid: str) -> dict[str, Any]:
        """Hand a follower to an agent (who must be online): ``POST /customservice/kfsession/create``."""
        body = {"kf_account": check_kf_account(kf_account), "openid": openid}
        return self.client.post("/customservice/kfsession/create", body)

    def close_session(self, kf_account: str, openid: str) -> dict[str, Any]:
        """End the follower's session with the agent: ``POST /customservice/kfsession/close``."""
        body = {"kf_account": check_kf_account(kf_account), "openid": openid}
        return self.client.post("/customservice/kfsession/close", body)

    def get_session(self, openid: str) -> dict[str, Any]:
        """The follower's session (``{"kf_account", "createtime"}``; kf_account empty when none):
        ``GET /customservice/kfsession/getsession``.
        """
        return self.client.get("/customservice/kfsession/getsession", {"openid": openid})

    def get_sessions(self, kf_account: str) -> _Rows:
        """The agent's sessions (``sessionlist``: openid, createtime).

        ``GET /customservice/kfsession/getsessionlist``.
        """
        params = {"kf_account": check_kf_account(kf_account)}
        return self.client.get("/customservice/kfsession/getsessionlist", params, then=_rows("sessionlist"))

    def get_wait_cases(self) -> dict[str, Any]:
        """Followers waiting for an agent (``{"count", "waitcaselist": [{"openid", "latest_time"}]}``):
        ``GET /customservice/kfsession/getwaitcase``.
        """
        return self.client.get("/customservice/kfsession/getwaitcase")


def _rows(key: str) -> Callable[[dict[str, Any]], _Rows]:
    """The ``then=`` that takes the list under ``key`` (absent: empty)."""
    return lambda result: list(result.get(key, []))
