"""Fake statistics: ``/datacube/*`` with WeChat's date checks.

Rules: a date that is not ``YYYY-MM-DD`` -> 61500; begin after end, a range longer than the
endpoint allows, or an end_date that is not yet over (Beijing time, by ``fake.clock``) -> 61501;
a retired endpoint (getarticlesummary, getarticletotal, getuserread[hour], getusershare[hour]) ->
45103. getusersummary and getusercumulate are computed from ``fake.users`` (their
``subscribe_time``); other endpoints answer the rows a test put in ``fake.state["datacube"][name]``
whose ``ref_date`` is in range. The published-content endpoints add ``is_delay``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..fake import FakeRequest, FakeWeChat, WeChatFault, endpoint

__all__ = ["set_rows"]

_BEIJING = timezone(timedelta(hours=8))
# Written out here rather than imported from wxmp.api.datacube on purpose: the fake stands in for
# WeChat, so a mistake in the client's table must not be mirrored by the fake.
_SPANS = {
    "getusersummary": 7,
    "getusercumulate": 7,
    "getarticleread": 1,
    "getarticleshare": 1,
    "getbizsummary": 30,
    "getarticletotaldetail": 1,
    "getupstreammsg": 7,
    "getupstreammsghour": 1,
    "getupstreammsgweek": 30,
    "getupstreammsgmonth": 30,
    "getupstreammsgdist": 15,
    "getupstreammsgdistweek": 30,
    "getupstreammsgdistmonth": 30,
    "getinterfacesummary": 30,
    "getinterfacesummaryhour": 1,
}
_NEW = {"getarticleread", "getarticleshare", "getbizsummary", "getarticletotaldetail"}
_RETIRED = (
    "getarticlesummary",
    "getarticletotal",
    "getuserread",
    "getuserreadhour",
    "getusershare",
    "getusersharehour",
)


def set_rows(fake: FakeWeChat, name: str, rows: list[dict[str, Any]]) -> None:
    """What ``/datacube/<name>`` reports (rows with a ``ref_date``)."""
    fake.state.setdefault("datacube", {})[name] = rows


def _range(fake: FakeWeChat, req: FakeRequest, name: str) -> tuple[date, date]:
    data = req.json
    try:
        begin = date.fromisoformat(str(data.get("begin_date")))
        end = date.fromisoformat(str(data.get("end_date")))
    except ValueError:
        raise WeChatFault(61500, "date format error")
    today = datetime.fromtimestamp(fake.clock(), _BEIJING).date()
    if begin > end or end >= today or (end - begin).days + 1 > _SPANS[name]:
        raise WeChatFault(61501, "date range error")
    return begin, end


def _day_of(timestamp: Any) -> date:
    return datetime.fromtimestamp(int(timestamp), _BEIJING).date()


def _days(begin: date, end: date) -> list[date]:
    return [begin + timedelta(days=i) for i in range((end - begin).days + 1)]


def _handler(name: str) -> Any:
    def handle(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
        begin, end = _range(fake, req, name)
        followers = [u for u in fake.users.values() if u.get("subscribe")]
        if name == "getusersummary":
            rows = [
                {
                    "ref_date": d.isoformat(),
                    "user_source": 0,
                    "new_user": sum(1 for u in followers if _day_of(u["subscribe_time"]) == d),
                    "cancel_user": 0,
                }
                for d in _days(begin, end)
            ]
        elif name == "getusercumulate":
            rows = [
                {
                    "ref_date": d.isoformat(),
                    "user_source": 0,
                    "cumulate_user": sum(1 for u in followers if _day_of(u["subscribe_time"]) <= d),
                }
                for d in _days(begin, end)
            ]
        else:
            stored = fake.state.get("datacube", {}).get(name, [])
            rows = [r for r in stored if begin.isoformat() <= str(r.get("ref_date", "")) <= end.isoformat()]
        result: dict[str, Any] = {"list": rows}
        if name in _NEW:
            result["is_delay"] = False
        return result

    return handle


def _retired(fake: FakeWeChat, req: FakeRequest) -> dict[str, Any]:
    raise WeChatFault(45103, "This API has been unsupported")


for _name in _SPANS:
    endpoint("POST", f"/datacube/{_name}")(_handler(_name))
for _name in _RETIRED:
    endpoint("POST", f"/datacube/{_name}")(_retired)
