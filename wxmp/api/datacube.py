"""Statistics (数据统计): ``wx.datacube`` (``POST /datacube/*`` with ``begin_date``/``end_date``).

Every endpoint takes dates as ``YYYY-MM-DD`` (or :class:`datetime.date`), ``end_date`` at most
yesterday (Beijing time) and a range of at most :data:`SPANS` days, checked here before the call.
In 2025 WeChat replaced the article statistics of the mass-send era (``getarticlesummary``,
``getarticletotal``, ``getuserread``, ``getusershare`` and their hourly forms) with the
"published content" ones (``getarticleread``, ``getarticleshare``, ``getbizsummary``,
``getarticletotaldetail``); the old names raise :class:`~wxmp.errors.RetiredApiError` (45103) naming
the replacement, without a request. Spans marked (?) are not confirmed by WeChat's pages; use
:meth:`DatacubeAPI.query` to call an endpoint without the local checks.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..errors import RetiredApiError
from ._base import ApiGroup

__all__ = ["RETIRED", "SPANS", "DatacubeAPI", "DateLike"]

DateLike = date | str
BEIJING = timezone(timedelta(hours=8))

#: endpoint -> the longest range (days, both ends included) one call may ask for.
SPANS: dict[str, int] = {
    "getusersummary": 7,
    "getusercumulate": 7,
    "getarticleread": 1,  # (?)
    "getarticleshare": 1,  # (?)
    "getbizsummary": 30,  # (?)
    "getarticletotaldetail": 1,  # (?)
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
#: retired endpoint -> its replacement (the hourly article ones have no hourly successor (?)).
RETIRED: dict[str, str] = {
    "getarticlesummary": "getarticleread",
    "getarticletotal": "getarticletotaldetail",
    "getuserread": "getarticleread",
    "getuserreadhour": "getarticleread",
    "getusershare": "getarticleshare",
    "getusersharehour": "getarticleshare",
}


def _day(value: DateLike, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name}: a date as YYYY-MM-DD, got {value!r}") from None


def _today() -> date:
    return datetime.now(BEIJING).date()


class DatacubeAPI(ApiGroup):
    """User, content, message and interface statistics."""

    def query(
        self, endpoint: str, begin_date: DateLike, end_date: DateLike, *, check: bool = True
    ) -> dict[str, Any]:
        """Call ``POST /datacube/<endpoint>`` for a date range; returns WeChat's answer (``list``...).

        With ``check`` the range is checked against :data:`SPANS` and yesterday first; a retired
        endpoint raises :class:`~wxmp.errors.RetiredApiError` either way.
        """
        path = f"/datacube/{endpoint}"
        if endpoint in RETIRED:
            replacement = RETIRED[endpoint]
            raise RetiredApiError(
                errmsg=f"{endpoint} was retired; use {replacement} (wx.datacube.{_METHODS[replacement]})",
                path=path,
                replacement=f"/datacube/{replacement}",
            )
        begin, end = _day(begin_date, "begin_date"), _day(end_date, "end_date")
        if check:
            if endpoint not in SPANS:
                raise ValueError(f"{endpoint}: not a datacube endpoint wxmp knows (pass check=False)")
            if begin > end:
                raise ValueError(f"{endpoint}: begin_date {begin} is after end_date {end}")
            if end >= _today():
                raise ValueError(f"{endpoint}: end_date {end} must be yesterday (Beijing time) or earlier")
            days = (end - begin).days + 1
            if days > SPANS[endpoint]:
                raise ValueError(f"{endpoint}: {days} days asked; WeChat allows {SPANS[endpoint]} per call")
        return self.client.post(path, {"begin_date": begin.isoformat(), "end_date": end.isoformat()})

    # -- users ------------------------------------------------------------------------------------

    def user_summary(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Follows and unfollows per day and source (7 days): ``POST /datacube/getusersummary``."""
        return self.query("getusersummary", begin_date, end_date)

    def user_cumulate(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Follower totals per day (7 days): ``POST /datacube/getusercumulate``."""
        return self.query("getusercumulate", begin_date, end_date)

    # -- published content ------------------------------------------------------------------------

    def biz_summary(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Overview of everything published in the range: ``POST /datacube/getbizsummary``."""
        return self.query("getbizsummary", begin_date, end_date)

    def article_read(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Reads of published content per day: ``POST /datacube/getarticleread``."""
        return self.query("getarticleread", begin_date, end_date)

    def article_share(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Shares of published content per day: ``POST /datacube/getarticleshare``."""
        return self.query("getarticleshare", begin_date, end_date)

    def article_total_detail(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Details of each piece published in the range: ``POST /datacube/getarticletotaldetail``."""
        return self.query("getarticletotaldetail", begin_date, end_date)

    # -- messages and the interface ---------------------------------------------------------------

    def upstream_msg(self, begin_date: DateLike, end_date: DateLike, period: str = "day") -> dict[str, Any]:
        """Messages users sent (``period``: day, hour, week, month): ``POST /datacube/getupstreammsg*``."""
        suffix = {"day": "", "hour": "hour", "week": "week", "month": "month"}
        if period not in suffix:
            raise ValueError("period: day, hour, week or month")
        return self.query(f"getupstreammsg{suffix[period]}", begin_date, end_date)

    def upstream_msg_dist(
        self, begin_date: DateLike, end_date: DateLike, period: str = "day"
    ) -> dict[str, Any]:
        """How many messages users sent, bucketed (``period``: day, week, month):
        ``POST /datacube/getupstreammsgdist*``.
        """
        suffix = {"day": "", "week": "week", "month": "month"}
        if period not in suffix:
            raise ValueError("period: day, week or month")
        return self.query(f"getupstreammsgdist{suffix[period]}", begin_date, end_date)

    def interface_summary(
        self, begin_date: DateLike, end_date: DateLike, hourly: bool = False
    ) -> dict[str, Any]:
        """Passive replies through the callback: ``POST /datacube/getinterfacesummary[hour]``."""
        return self.query(
            "getinterfacesummaryhour" if hourly else "getinterfacesummary", begin_date, end_date
        )

    # -- retired (they raise RetiredApiError naming the replacement) ------------------------------

    def article_summary(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Retired ``getarticlesummary``: raises RetiredApiError; use :meth:`article_read`."""
        return self.query("getarticlesummary", begin_date, end_date)

    def article_total(self, begin_date: DateLike, end_date: DateLike) -> dict[str, Any]:
        """Retired ``getarticletotal``: raises RetiredApiError; use :meth:`article_total_detail`."""
        return self.query("getarticletotal", begin_date, end_date)

    def user_read(self, begin_date: DateLike, end_date: DateLike, hourly: bool = False) -> dict[str, Any]:
        """Retired ``getuserread[hour]``: raises RetiredApiError; use :meth:`article_read`."""
        return self.query("getuserreadhour" if hourly else "getuserread", begin_date, end_date)

    def user_share(self, begin_date: DateLike, end_date: DateLike, hourly: bool = False) -> dict[str, Any]:
        """Retired ``getusershare[hour]``: raises RetiredApiError; use :meth:`article_share`."""
        return self.query("getusersharehour" if hourly else "getusershare", begin_date, end_date)


_METHODS = {
    "getarticleread": "article_read",
    "getarticleshare": "article_share",
    "getarticletotaldetail": "article_total_detail",
}
