"""Fake customer-service accounts and sessions: ``customservice/kfaccount/*``, ``kfsession/*`` and the
two lists under ``cgi-bin/customservice``.

Agents live in ``fake.state["kf_accounts"]``; a test binds one to a person (the invitation accepted)
with :func:`bind`, puts it online with :func:`set_online` and queues a waiting follower with
:func:`wait`. Rules: a kf_account that is not ``prefix@id`` (prefix 1..10 letters/digits) -> 65404;
a nickname of 0 or over 16 characters -> 65403; an existing account -> 65406; more than 100 -> 65405;
an unknown account -> 65401; inviting for a bound account -> 65409 (?); a head image that is not
jpg/png -> 40005; a session with an unbound agent -> 65402, an offline one -> 65415, a follower
another agent serves -> 65414; closing a session that does not exist -> 65413; unknown openid ->
40003. kfsession/create and close also emit the ``kf_create_session`` / ``kf_close_session`` pushes
into ``fake.state["kf_events"]`` (render them with :func:`kf_event_xml`).
"""

from __future__ import annotations

import re
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint
from ._util import LOCK, follower, next_id, state

__all__ = ["bind", "kf_accounts", "kf_event_xml", "kf_sessions", "set_online", "wait"]

MAX_ACCOUNTS = 100
_ACCOUNT = re.compile(r"^[A-Za-z0-9]{1,10}@[A-Za-z0-9_-]+$")


def kf_accounts(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """kf_account -> {"kf_nick", "kf_id", "kf_wx", "invite_wx", "online", "headimg"}."""
    return state(fake, "kf_accounts", dict)


def kf_sessions(fake: FakeWeChat) -> dict[str, dict[str, Any]]:
    """openid -> {"kf_account", "createtime"} for every open session."""
    return state(fake, "kf_sessions", dict)


def bind(fake: FakeWeChat, kf_account: str, wechat_id: str = "agent_wx") -> None:
    """The invited person accepted: the account is bound to ``wechat_id``."""
    with LOCK:
        account = kf_accounts(fake)[kf_account]
        account["kf_wx"] = wechat_id
        account.pop("invite_wx", None)


def set_online(fake: FakeWeChat, kf_account: str, online: bool = True) -> None:
    """The agent logs in to (or out of) the customer-service client."""
    with LOCK:
        kf_accounts(fake)[kf_account]["online"] = online


def wait(fake: FakeWeChat, openid: str) -> None:
    """A follower was transferred to customer service and waits for an agent."""
    with LOCK:
        state(fake, "kf_waiting", dict)[openid] = int(fake.clock())


def kf_event_xml(fake: FakeWeChat, index: int = -1, *, to_user: str = "gh_fake") -> str:
    """A recorded kf session push (``kf_create_session`` / ``kf_close_session``) as WeChat sends it."""
    event = state(fake, "kf_events", list)[index]
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<FromUserName><![CDATA[{event['openid']}]]></FromUserName><CreateTime>{event['at']}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event['event']}]]></Event>"
        f"<KfAccount><![CDATA[{event['kf_account']}]]></KfAccount></xml>"
    )


def _account_name(value: Any) -> str:
    if not isinstance(value, str) or not _ACCOUNT.match(value):
        raise WeChatFault(65404, "invalid kf_account")
    return value


def _known(fake: FakeWeChat, value: Any) -> dict[str, Any]:
    account = kf_accounts(fake).get(_account_name(value))
    if account is None:
        raise WeChatFault(65401, "invalid kf_account")
    return account


def _nick(data: dict[str, Any]) -> str:
    nick = data.get("nickname")
    if not isinstance(nick, str) or not 1 <= len(nick) <= 16:
        raise WeChatFault(65403, "invalid nickname")
    return nick


@endpoint("POST", "/customservice/kfaccount/add")
def _add(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    name = _account_name(data.get("kf_account"))
    nick = _nick(data)
    with LOCK:
        accounts = kf_accounts(fake)
        if name in accounts:
            raise WeChatFault(65406, "kf_account exsited")
        if len(accounts) >= MAX_ACCOUNTS:
            raise WeChatFault(65405, "kf_account count exceeds limit")
        accounts[name] = {
            "kf_nick": nick,
            "kf_id": next_id(fake, "kf", 1001),
            "online": False,
            "headimg": None,
        }
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/customservice/kfaccount/update")
def _update(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    with LOCK:
        _known(fake, data.get("kf_account"))["kf_nick"] = _nick(data)
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/customservice/kfaccount/del")
def _delete(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        name = req.args.get("kf_account")
        _known(fake, name)
        del kf_accounts(fake)[str(name)]
        for openid in [o for o, s in kf_sessions(fake).items() if s["kf_account"] == name]:
            del kf_sessions(fake)[openid]
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/customservice/kfaccount/inviteworker")
def _invite(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "invite_wx")
    with LOCK:
        account = _known(fake, data.get("kf_account"))
        if account.get("kf_wx"):
            raise WeChatFault(65409, "kf_account already bound")
        account["invite_wx"] = data["invite_wx"]
        account["invite_expire_time"] = int(fake.clock()) + 7 * 24 * 3600
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/customservice/kfaccount/uploadheadimg")
def _headimg(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    upload = req.files.get("media")
    if upload is None:
        raise WeChatFault(41005, "media data missing")
    if (upload.filename or "").rsplit(".", 1)[-1].lower() not in ("jpg", "jpeg", "png"):
        raise WeChatFault(40005, "invalid file type")
    with LOCK:
        account = _known(fake, req.args.get("kf_account"))
        account["headimg"] = upload.read()
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/cgi-bin/customservice/getkflist")
def _list(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    rows = []
    with LOCK:
        for name, a in kf_accounts(fake).items():
            row: dict[str, Any] = {"kf_account": name, "kf_nick": a["kf_nick"], "kf_id": a["kf_id"]}
            row["kf_headimgurl"] = f"http://mmbiz.qpic.cn/mmbiz/kf{a['kf_id']}/0" if a["headimg"] else ""
            if a.get("kf_wx"):
                row["kf_wx"] = a["kf_wx"]
            elif a.get("invite_wx"):
                row.update(invite_wx=a["invite_wx"], invite_expire_time=a["invite_expire_time"])
                row["invite_status"] = "waiting"
            rows.append(row)
    return {"kf_list": rows}


@endpoint("GET", "/cgi-bin/customservice/getonlinekflist")
def _online(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        sessions = kf_sessions(fake).values()
        rows = [
            {
                "kf_account": name,
                "status": 1,
                "kf_id": a["kf_id"],
                "accepted_case": sum(1 for s in sessions if s["kf_account"] == name),
            }
            for name, a in kf_accounts(fake).items()
            if a["online"]
        ]
    return {"kf_online_list": rows}


def _record(fake: FakeWeChat, event: str, kf_account: str, openid: str) -> None:
    state(fake, "kf_events", list).append(
        {"event": event, "kf_account": kf_account, "openid": openid, "at": int(fake.clock())}
    )


@endpoint("POST", "/customservice/kfsession/create")
def _create(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "openid")
    follower(fake, data["openid"])
    with LOCK:
        account = _known(fake, data.get("kf_account"))
        if not account.get("kf_wx"):
            raise WeChatFault(65402, "kf_account not bound to a wechat")
        if not account["online"]:
            raise WeChatFault(65415, "kf_account is offline")
        current = kf_sessions(fake).get(data["openid"])
        if current is not None and current["kf_account"] != data["kf_account"]:
            raise WeChatFault(65414, "the user is being served by another kf_account")
        kf_sessions(fake)[data["openid"]] = {
            "kf_account": data["kf_account"],
            "createtime": int(fake.clock()),
        }
        state(fake, "kf_waiting", dict).pop(data["openid"], None)
        _record(fake, "kf_create_session", data["kf_account"], data["openid"])
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("POST", "/customservice/kfsession/close")
def _close(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    data = req.json
    req.require(data, "openid")
    with LOCK:
        _known(fake, data.get("kf_account"))
        current = kf_sessions(fake).get(data["openid"])
        if current is None or current["kf_account"] != data["kf_account"]:
            raise WeChatFault(65413, "no session for this user")
        del kf_sessions(fake)[data["openid"]]
        _record(fake, "kf_close_session", data["kf_account"], data["openid"])
    return {"errcode": 0, "errmsg": "ok"}


@endpoint("GET", "/customservice/kfsession/getsession")
def _get_session(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    openid = req.args.get("openid")
    follower(fake, openid)
    session = kf_sessions(fake).get(str(openid))
    if session is None:
        return {"createtime": 0, "kf_account": ""}
    return dict(session)


@endpoint("GET", "/customservice/kfsession/getsessionlist")
def _session_list(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    name = req.args.get("kf_account")
    with LOCK:
        _known(fake, name)
        rows = [
            {"createtime": s["createtime"], "openid": o}
            for o, s in kf_sessions(fake).items()
            if s["kf_account"] == name
        ]
    return {"sessionlist": rows}


@endpoint("GET", "/customservice/kfsession/getwaitcase")
def _wait_case(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    with LOCK:
        waiting = state(fake, "kf_waiting", dict)
        rows = [{"latest_time": at, "openid": o} for o, at in waiting.items()]
    return {"count": len(rows), "waitcaselist": rows}
