"""Router: kinds, filters, regex matches, first match wins, shortcuts, catch-all."""

from __future__ import annotations

from pathlib import Path

import pytest

from wxmp import filters as F
from wxmp.dispatch import Router
from wxmp.messages import Message, parse

DATA = Path(__file__).parent / "data"


def load(name: str) -> Message:
    return parse((DATA / name).read_bytes())


def test_kind_is_case_insensitive_and_decorator_returns_function() -> None:
    router = Router()

    def handler(msg: Message) -> str:
        return "clicked"

    assert router.on("CLICK")(handler) is handler
    assert router.dispatch(load("event_click.xml")) == "clicked"
    assert router.dispatch(load("text.xml")) is None


def test_event_kinds_and_location_decision() -> None:
    router = Router()
    router.on("location")(lambda msg: "message")
    router.on("location_event")(lambda msg: "event")
    assert router.dispatch(load("location.xml")) == "message"
    assert router.dispatch(load("event_location.xml")) == "event"

    generic = Router()
    generic.on("event")(lambda msg: f"any event {msg.event}")
    assert generic.dispatch(load("event_scan.xml")) == "any event SCAN"
    assert generic.dispatch(load("text.xml")) is None


def test_keyword_filters_and_key_alias() -> None:
    router = Router()
    router.on("click", key="OTHER")(lambda msg: "other")
    router.on("click", key="V1001_TODAY_MUSIC")(lambda msg: "music")
    assert router.dispatch(load("event_click.xml")) == "music"
    scans = Router()
    scans.on("scancode_waitmsg", scan_type="barcode")(lambda msg: msg.scan_result)
    assert scans.dispatch(load("event_scancode_waitmsg.xml")) == "EAN_13,6901234567892"


def test_match_gives_handler_the_match() -> None:
    router = Router()
    seen = []

    @router.on("text", match=r"^你好，(\w+)")
    def greet(msg: Message) -> str:
        seen.append(msg)
        assert msg.match is not None
        return f"hi {msg.match[1]}"

    original = load("text.xml")
    assert router.dispatch(original) == "hi wxmp"
    assert original.match is None  # the handler got a copy
    assert seen[0].raw == original.raw


def test_first_registered_match_wins() -> None:
    router = Router()
    router.on("text")(lambda msg: "first")
    router.on("text", match="你好")(lambda msg: "second")
    router.on()(lambda msg: "catch-all")
    assert router.dispatch(load("text.xml")) == "first"
    assert router.dispatch(load("image.xml")) == "catch-all"


def test_catch_all_registered_first_takes_everything() -> None:
    router = Router()
    router.on()(lambda msg: "all")
    router.on("text")(lambda msg: "text")
    assert router.dispatch(load("text.xml")) == "all"


def test_when_composes_filters() -> None:
    router = Router()
    router.on("text", when=F.openid("nobody") | F.regex("wxmp"))(lambda msg: msg.match is not None)
    assert router.dispatch(load("text.xml")) is True


def test_shortcuts() -> None:
    router = Router()

    @router.text
    def t(msg: Message) -> str:
        return "t"

    @router.click(key="V1001_TODAY_MUSIC")
    def c(msg: Message) -> str:
        return "c"

    router.subscribe(lambda msg: "s")
    router.location_event(lambda msg: "le")
    router.default(lambda msg: "d")
    assert router.dispatch(load("text.xml")) == "t"
    assert router.dispatch(load("event_click.xml")) == "c"
    assert router.dispatch(load("event_subscribe.xml")) == "s"
    assert router.dispatch(load("event_location.xml")) == "le"
    assert router.dispatch(load("voice.xml")) == "d"
    with pytest.raises(
        TypeError, match=r"^use keyword filters with parentheses: @router\.text\(match=\.\.\.\)$"
    ):
        router.text(lambda msg: 1, match="x")


SHORTCUTS = [
    ("text", "text.xml"),
    ("image", "image.xml"),
    ("voice", "voice.xml"),
    ("video", "video.xml"),
    ("location", "location.xml"),
    ("link", "link.xml"),
    ("event", "event_view.xml"),
    ("subscribe", "event_subscribe.xml"),
    ("unsubscribe", "event_unsubscribe.xml"),
    ("click", "event_click.xml"),
    ("scan", "event_scan.xml"),
    ("location_event", "event_location.xml"),
    ("default", "shortvideo.xml"),
]


@pytest.mark.parametrize(("name", "data"), SHORTCUTS)
def test_each_shortcut_returns_the_function_and_routes_its_kind(name: str, data: str) -> None:
    router = Router()

    def handler(msg: Message) -> str:
        return name

    assert getattr(router, name)(handler) is handler
    assert router.dispatch(load(data)) == name
    if name != "default":  # the others take nothing else (events: no message)
        others = [d for n, d in SHORTCUTS if d != data and not (name == "event" and d.startswith("event_"))]
        assert [router.dispatch(load(d)) for d in others] == [None] * len(others)


@pytest.mark.parametrize(("name", "data"), SHORTCUTS)
def test_each_shortcut_takes_filters_in_parentheses(name: str, data: str) -> None:
    msg = load(data)
    router = Router()

    def miss(msg: Message) -> str:
        return "miss"

    def hit(msg: Message) -> str:
        return "hit"

    assert getattr(router, name)(when=lambda m: False)(miss) is miss
    assert getattr(router, name)(when=lambda m: m.raw == msg.raw)(hit) is hit
    assert getattr(router, name)()(miss) is miss
    assert router.dispatch(msg) == "hit"
    if name not in ("event", "default"):
        plain = Router()
        getattr(plain, name)()(hit)
        others = [d for n, d in SHORTCUTS if d != data]
        assert [plain.dispatch(load(d)) for d in others] == [None] * len(others)


def test_all_filters_of_a_registration_must_pass() -> None:
    router = Router()
    router.on("click", key="V1001_TODAY_MUSIC", when=lambda m: False)(lambda msg: "no")
    router.on("click", key="OTHER", when=lambda m: True)(lambda msg: "no")
    router.on("text", match="nothing like this", when=lambda m: True)(lambda msg: "no")
    assert router.dispatch(load("event_click.xml")) is None
    assert router.dispatch(load("text.xml")) is None


def test_candidates_are_computed_once_per_set_of_kinds() -> None:
    router = Router()
    router.on("text")(lambda msg: "t")
    router.on("click")(lambda msg: "c")
    text = load("text.xml")
    first = router._candidates(text.kinds)
    assert [r.kind for r in first] == ["text"]
    assert router._candidates(text.kinds) is first
    assert router._table == {text.kinds: first}
    router.on()(lambda msg: "all")  # a new registration empties the table
    assert router._table == {}
    assert [r.kind for r in router._candidates(text.kinds)] == ["text", None]


def test_late_registration_is_seen() -> None:
    router = Router()
    router.on("text", match="nope")(lambda msg: "x")
    assert router.dispatch(load("text.xml")) is None  # builds the candidate cache
    router.on("text")(lambda msg: "late")
    assert router.dispatch(load("text.xml")) == "late"


def test_bad_registrations() -> None:
    router = Router()
    with pytest.raises(
        TypeError, match=r"^kind must be a message type or event name \(use @on\(\) for a catch-all\)$"
    ):
        router.on(lambda msg: 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^a handler must be callable$"):
        router.on("text")(42)  # type: ignore[type-var]
    assert router.routes == []


# -- slow handlers: the strategy a route carries ---------------------------------------------


@pytest.mark.parametrize(
    ("slow", "mode"),
    [
        (False, None),
        (None, None),
        (True, "default"),
        ("retries", "retries"),
        ("Customer-Service", "customer_service"),
    ],
)
def test_a_route_carries_its_slow_strategy(slow: object, mode: str | None) -> None:
    router = Router()
    router.on("text", slow=slow)(lambda msg: "x")  # type: ignore[arg-type]
    (route,) = router.routes
    assert route.slow == mode
    assert router.has_slow is (mode is not None)


def test_an_unknown_slow_strategy_is_refused_naming_the_option() -> None:
    from wxmp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^slow: must be one of .*not 'soon'"):
        Router().on("text", slow="soon")


def test_a_router_has_slow_handlers_once_one_is_registered_whatever_comes_after() -> None:
    router = Router()
    assert router.has_slow is False
    router.on("text")(lambda msg: "quick")
    assert router.has_slow is False
    router.on("image", slow=True)(lambda msg: "slow")
    router.on("voice")(lambda msg: "quick")
    assert router.has_slow is True
    assert [r.slow for r in router.routes] == [None, "default", None]


# -- settle: a handler's result, an async handler's awaited ----------------------------------


def test_settle_hands_plain_results_back_untouched() -> None:
    from wxmp.dispatch import settle
    from wxmp.replies import TextReply

    reply = TextReply("hi")
    text = "plain"
    assert settle(None) is None and settle(text) is text and settle(reply) is reply


def test_settle_runs_an_async_handlers_coroutine_and_any_awaitable() -> None:
    from wxmp.dispatch import settle

    async def handler() -> str:
        return "from a coroutine"

    class Later:
        def __await__(self):  # type: ignore[no-untyped-def]
            return (yield from _done("from an awaitable").__await__())

    async def _done(value: str) -> str:
        return value

    assert settle(handler()) == "from a coroutine"
    assert settle(Later()) == "from an awaitable"
