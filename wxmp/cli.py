"""``flask wxmp ...``: manage the account and run the central refresher from the terminal.

Commands: ``token`` (``--refresh``), ``menu push|show|delete``, ``users export``, ``send``,
``mass preview``, ``simulate``, ``qrcode`` and ``refresher``. Errors print one line with WeChat's
errcode and a hint, and exit with status 1 (no traceback); nothing prints the secret or a full token.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup

from . import signals
from .cache import CacheUnavailable
from .config import Settings
from .errors import ApiError, ConfigError, NetworkError, TokenUnavailableError, WxMPError
from .token import mask


@click.group("wxmp", cls=AppGroup)
@click.option(
    "--account",
    "account_name",
    default=None,
    metavar="NAME",
    help="Act on this account of WXMP_ACCOUNTS (default: the app's default account).",
)
@click.pass_context
def wxmp_cli(ctx: click.Context, account_name: str | None) -> None:
    """WeChat Official Account tools (wxmp)."""
    ctx.meta["wxmp.account"] = account_name


F = TypeVar("F", bound=Callable[..., Any])

#: errcode -> what to do about it, printed under the error (WeChat's 全局返回码说明,
#: developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html).
HINTS: dict[int, str] = {
    -1: "WeChat is busy: retry in a moment",
    40001: "the access_token was rejected: run `flask wxmp token --refresh`, and check that no other "
    "server fetches tokens for this account with the classic /cgi-bin/token",
    40002: "bad grant_type: check WXMP_API_BASE points at WeChat",
    40003: "unknown openid: it must follow this account (openids differ per account)",
    40013: "WXMP_APPID is wrong: copy the AppID from mp.weixin.qq.com → 设置与开发 → 基本配置",
    40014: "the access_token is malformed: run `flask wxmp token --refresh`",
    40125: "WXMP_SECRET is wrong or was reset: copy the AppSecret from 设置与开发 → 基本配置",
    40164: "add this server's IP to the whitelist in the admin console (设置与开发 → 基本配置 → IP白名单)",
    41001: "no access_token: set WXMP_APPID and WXMP_SECRET, or run `flask wxmp refresher` for external mode",
    42001: "the access_token expired: run `flask wxmp token --refresh`",
    43004: "the user does not follow the account (any more)",
    45009: "the daily quota is used up: wait for midnight Beijing time, or wx.clear_quota() (10 a month)",
    45015: "the user has not written to the account in 48 hours: customer-service messages are refused",
    46003: "the account has no menu: push one with `flask wxmp menu push menu.json`",
    48001: "this account may not call this API (unverified accounts lack many; see 接口权限)",
    89503: "add this server's IP to the whitelist in the admin console (设置与开发 → 基本配置 → IP白名单)",
}


def _ext() -> Any:
    ext = current_app.extensions.get("wxmp")
    if ext is None:
        raise click.ClickException("this app has no WxMP extension (wx = WxMP(app))")
    return ext


def hint(exc: Exception, settings: Settings | None = None) -> str | None:
    """The one-line advice for ``exc``, if there is one; ``settings`` say what is actually configured."""
    if isinstance(exc, TokenUnavailableError) and isinstance(exc.__cause__, Exception):
        return hint(exc.__cause__, settings)  # fetching failed: advise on why
    if isinstance(exc, ApiError):
        if 40016 <= exc.errcode <= 40027:
            return "the menu breaks one of WeChat's limits (buttons, names, keys, urls)"
        return HINTS.get(exc.errcode)
    if isinstance(exc, NetworkError):
        where = settings.api_base if settings is not None else "WeChat (WXMP_API_BASE)"
        return f"{where} could not be reached: check the network, DNS and proxy settings (HTTPS_PROXY)"
    if isinstance(exc, TokenUnavailableError):
        if settings is None:
            return None
        if settings.refresher == "external":
            return "in external mode the token comes from `flask wxmp refresher`: is it running?"
        if not settings.secret:
            return "set WXMP_SECRET (the AppSecret, from 设置与开发 → 基本配置) in app.config"
        return None
    if isinstance(exc, CacheUnavailable):
        return "the shared cache (WXMP_CACHE) did not answer: is the server up and the address right?"
    if isinstance(exc, ConfigError):
        key = exc.key.split(".")[-1].split("[")[0]
        return (
            f"set app.config[{key!r}] in your app (wxmp reads app.config; an environment variable "
            "only counts if your app copies it there)"
        )
    return None


def _current_settings() -> Settings | None:
    try:
        return _account().settings  # type: ignore[no-any-return]
    except Exception:  # no app, no extension, no such account: no settings to consult
        return None


def fail(exc: Exception) -> None:
    """Print an error as one line with a hint, and exit non-zero (no traceback)."""
    if isinstance(exc, ApiError):
        click.echo(f"Error: WeChat errcode {exc.errcode}: {exc.errmsg} ({exc.path})", err=True)
    else:
        click.echo(f"Error: {exc}", err=True)
    advice = hint(exc, _current_settings())
    if advice:
        click.echo(f"Hint: {advice}", err=True)
    sys.exit(1)


def _friendly(fn: F) -> F:
    """Turn wxmp errors (and invalid input) into :func:`fail`'s one-line message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (WxMPError, ValueError) as exc:
            fail(exc)

    return wrapper  # type: ignore[return-value]


def _account() -> Any:
    """The account the command acts on (``--account NAME``, else the default one)."""
    name = click.get_current_context().meta.get("wxmp.account")
    return _ext().state().account(name)


def _wx() -> Any:
    acct = _account()
    if acct.settings.sandbox:
        click.echo(
            "(sandbox mode: this command talks to its own in-process fake WeChat, not to the one behind a "
            "running server's sandbox page; nothing reaches a real account)",
            err=True,
        )
    return acct


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


# -- token ------------------------------------------------------------------------------------------


@wxmp_cli.command("token")
@click.option("--refresh", is_flag=True, help="Fetch a new token now (costs one of the 2000 daily fetches).")
@_friendly
def token_command(refresh: bool) -> None:
    """Show the access_token (masked), its age and expiry, and who fetched it."""
    manager = _wx().access_token
    if refresh:
        entry = manager.refresh()
    else:
        manager.get()
        entry = manager.peek()
    if entry is None:
        raise TokenUnavailableError("no token in the cache")
    now = time.time()
    click.echo(f"access_token  {mask(entry.value)}")
    click.echo(f"expires in    {_duration(entry.expires_at - now)}")
    click.echo(f"age           {_duration(now - entry.fetched_at)}")
    click.echo(f"fetched by    {entry.host} (pid {entry.pid})")
    fetches = manager.fetches_today()
    click.echo(f"fetches today {'?' if fetches is None else fetches} / 2000")
    if not manager.cache_ok:
        raise CacheUnavailable(
            f"the shared {manager.store.backend} cache did not answer: this token is this process's own "
            "copy, and the fleet cannot share it until the cache is back"
        )


# -- menu -------------------------------------------------------------------------------------------

menu_cli = AppGroup("menu", help="The account's custom menu.")
wxmp_cli.add_command(menu_cli)


def _load_menu(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise click.ClickException("YAML menus need PyYAML: pip install 'flask-wxmp[yaml]'")
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path.name}: not valid YAML ({exc})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: not valid JSON ({exc})")


@menu_cli.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_friendly
def menu_push(file: Path) -> None:
    """Replace the menu with FILE (.json, or .yaml with the yaml extra): {"button": [...]}."""
    menu = _load_menu(file)
    _wx().menu.create(menu)
    click.echo(f"menu pushed from {file.name}")


@menu_cli.command("show")
@_friendly
def menu_show() -> None:
    """Print the menu set through the API, as JSON."""
    click.echo(_json(_wx().menu.get()))


@menu_cli.command("delete")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_friendly
def menu_delete(yes: bool) -> None:
    """Delete the menu, conditional menus included."""
    if not yes:
        click.confirm("Delete the account's menu for every follower?", abort=True)
    _wx().menu.delete()
    click.echo("menu deleted")


# -- users ------------------------------------------------------------------------------------------

users_cli = AppGroup("users", help="Followers.")
wxmp_cli.add_command(users_cli)

USER_FIELDS = (
    "openid",
    "nickname",
    "remark",
    "language",
    "subscribe",
    "subscribe_time",
    "subscribe_scene",
    "qr_scene",
    "qr_scene_str",
    "tagid_list",
    "unionid",
)


def _exported(path: Path) -> set[str]:
    if not path.exists() or path.stat().st_size == 0:
        return set()
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "openid" not in reader.fieldnames:
            raise click.ClickException(f"{path} exists and is not a wxmp export (no openid column)")
        return {row["openid"] for row in reader if row.get("openid")}


@users_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--lang", default="zh_CN", show_default=True, type=click.Choice(["zh_CN", "zh_TW", "en"]))
@_friendly
def users_export(file: Path, lang: str) -> None:
    """Write every follower with their info to FILE (CSV), 100 per request.

    Resumable: openids already in FILE are skipped and new rows appended, so an interrupted export
    continues where it stopped.
    """
    from .api.user import BATCHGET_MAX

    wx = _wx()
    done = _exported(file)
    click.echo("listing followers...", err=True)
    todo = [openid for openid in wx.user.iter_followers() if openid not in done]
    if done:
        click.echo(f"{len(done)} already in {file.name}; {len(todo)} to go", err=True)
    fresh = not file.exists() or file.stat().st_size == 0
    written = 0
    with file.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=USER_FIELDS, extrasaction="ignore")
        if fresh:
            writer.writeheader()
        with click.progressbar(length=len(todo), label="exporting", file=sys.stderr) as bar:
            for start in range(0, len(todo), BATCHGET_MAX):
                batch = todo[start : start + BATCHGET_MAX]
                for info in wx.user.get_batch(batch, lang=lang):
                    row = dict(info)
                    row["tagid_list"] = " ".join(str(t) for t in info.get("tagid_list", []))
                    writer.writerow(row)
                f.flush()  # a batch on disk is a batch the next run skips
                written += len(batch)
                bar.update(len(batch))
    click.echo(f"{written} followers written to {file} ({len(done) + written} in all)")


# -- messages ---------------------------------------------------------------------------------------


@wxmp_cli.command("send")
@click.argument("openid")
@click.argument("text")
@_friendly
def send_command(openid: str, text: str) -> None:
    """Send TEXT to OPENID as a customer-service message (within 48 h of their last message)."""
    _wx().message.send_text(openid, text)
    click.echo(f"sent to {openid}")


mass_cli = AppGroup("mass", help="Mass messages.")
wxmp_cli.add_command(mass_cli)


@mass_cli.command("preview")
@click.argument("openid")
@click.argument("text")
@_friendly
def mass_preview(openid: str, text: str) -> None:
    """Send TEXT as a mass-message preview to one follower, OPENID."""
    result = _wx().mass.preview(openid, text=text)
    click.echo(f"preview sent to {openid} (msg_id {result.get('msg_id', '?')})")


@wxmp_cli.command("simulate")
@click.argument("text")
@click.option("--openid", default="oWxmpSimulatedUser0000000000", show_default=True, help="The sender.")
@click.option("--xml", "show_xml", is_flag=True, help="Print the reply's XML instead of its content.")
@_friendly
def simulate_command(text: str, openid: str, show_xml: bool) -> None:
    """Send TEXT to this app's callback as WeChat would (signed, encrypted if an AES key is set).

    Runs in-process against the app's WSGI callback: no server and no network needed.
    """
    from .replies import TextReply
    from .testing.user import WeChatUser

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = _account().settings
    if not settings.token:
        raise ConfigError("WXMP_TOKEN", "is required for the callback")
    user = WeChatUser(
        app.wsgi_app,
        settings.token,
        aes_key=settings.aes_key,
        appid=settings.appid if settings.aes_key else None,
        openid=openid,
        path=settings.callback_path,
    )
    failures: list[BaseException] = []

    def failed(sender: Any, message: Any = None, exception: BaseException | None = None, **kw: Any) -> None:
        if exception is not None:
            failures.append(exception)

    with signals.handler_failed.connected_to(failed):
        result = user.post(user.message_xml("text", {"Content": text}))
    if failures:
        exc = failures[0]
        raise click.ClickException(
            f"the handler raised {type(exc).__name__}: {exc} (WeChat would get 'success' and show nothing; "
            "the traceback is in the log)"
        )
    if result.status != 200:
        raise click.ClickException(f"the callback answered {result.status}: {result.text[:200]}")
    parsed = _parse_answer(user, result.body)
    if parsed is None:
        click.echo("(no reply: the callback answered success)")
    elif show_xml:
        click.echo(parsed[1])
    elif isinstance(parsed[0], TextReply):
        click.echo(parsed[0].content)
    else:
        click.echo(repr(parsed[0]))


def _parse_answer(user: Any, body: bytes) -> tuple[Any, str] | None:
    from .crypto import is_envelope
    from .replies import EmptyReply, SuccessReply, parse_reply

    if is_envelope(body):
        body = user.crypto.decrypt_reply(body, user.token)
    reply = parse_reply(body).reply
    if isinstance(reply, (SuccessReply, EmptyReply)):
        return None
    return reply, body.decode("utf-8", "replace")


@wxmp_cli.command("qrcode")
@click.argument("scene")
@click.option("--expire", type=int, default=None, help="Seconds (up to 30 days): a temporary code.")
@_friendly
def qrcode_command(scene: str, expire: int | None) -> None:
    """Create a parameterised QR code for SCENE (a number is a scene_id) and print its image URL."""
    value: int | str = int(scene) if scene.isdigit() else scene
    wx = _wx()
    result = wx.qrcode.create(value, expire_seconds=expire)
    click.echo(wx.qrcode.url(result["ticket"]))
    if result.get("url"):
        click.echo(f"content: {result['url']}", err=True)


@wxmp_cli.command("refresher")
@click.option(
    "--jsapi-ticket", is_flag=True, help="Also keep the JS-SDK jsapi_ticket fresh (workers using wx.jssdk)."
)
def refresher_command(jsapi_ticket: bool) -> None:
    """Run the central token refresher in the foreground (for WXMP_REFRESHER='external' workers).

    Keeps the access_token (and, with --jsapi-ticket, the jsapi_ticket) fresh in the shared cache;
    stops on SIGTERM/Ctrl-C. Only this host needs the AppSecret and a place in the IP whitelist.
    """
    from .refresher import Refresher

    state = _ext().state()
    name = click.get_current_context().meta.get("wxmp.account")
    accounts = [state.account(name)] if name else [a for a in state.accounts.values() if a.settings.appid]
    for acct in accounts:
        label = f"account {acct.name!r}: " if len(state.accounts) > 1 else ""
        if not acct.settings.secret:
            raise click.ClickException(f"{label}WXMP_SECRET is not set: the central refresher needs it")
        if acct.settings.refresher == "external":
            raise click.ClickException(
                f"{label}WXMP_REFRESHER is 'external' in this config: the refresher itself must be allowed "
                "to fetch (run it with WXMP_REFRESHER=thread or unset)"
            )
    if state.refresher is not None:
        state.refresher.stop()
    managers = []
    for acct in accounts:
        if jsapi_ticket:
            acct.group("jssdk").manager  # noqa: B018 (creates the ticket's TokenManager)
        managers.extend(acct.tokens.values())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("wxmp").setLevel(logging.INFO)
    refresher = Refresher(managers)

    def on_term(signum: int, frame: Any) -> None:
        refresher.stop(timeout=0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    click.echo(f"wxmp refresher running (pid {os.getpid()}, cache {state.store.backend})")
    refresher.run()
    click.echo("wxmp refresher stopped")


# -- publishing and diagnosis (logic in wxmp.publish and wxmp.doctor) ------------------------------


@wxmp_cli.command("publish")
@click.argument("article", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--cover", metavar="IMG", help="Cover image (file or URL); default: front matter or first image."
)
@click.option("--submit", is_flag=True, help="Publish the draft and wait for WeChat's verdict.")
@click.option(
    "--preview", "preview_openid", metavar="OPENID", help="Send the draft as a preview to a follower."
)
@_friendly
def publish_command(article: Path, cover: str | None, submit: bool, preview_openid: str | None) -> None:
    """Turn ARTICLE (Markdown with front matter) into a draft; upload only what changed."""
    from .publish import Publisher

    wx = _wx()
    publisher = Publisher(wx, wx.settings.appid or "-", echo=lambda line: click.echo(line, err=True))
    result = publisher.prepare(article, cover)
    counts = f"{result.uploaded} uploaded, {result.reused} already on WeChat"
    click.echo(f"draft {result.media_id} {result.draft} ({counts})")
    if preview_openid:
        publisher.preview(result.media_id, preview_openid)
        click.echo(f"preview sent to {preview_openid}")
    if submit:
        from .errors import PublishUnauthorizedError

        try:
            publisher.submit(result)
        except PublishUnauthorizedError as exc:
            raise click.ClickException(
                f"WeChat errcode {exc.errcode}: {exc.advice} (draft {result.media_id})"
            )
        click.echo(f"published: article_id {result.article_id}")
        for url in result.urls:
            click.echo(f"  {url}")


@wxmp_cli.command("doctor")
def doctor_command() -> None:
    """Check the credentials, IP whitelist, quotas and callback URL; one PASS/FAIL line each."""
    from .doctor import diagnose

    checks = diagnose(_wx())
    width = max(len(c.name) for c in checks)
    for check in checks:
        click.echo(f"{check.status.upper():4}  {check.name:{width}}  {check.detail}")
        if check.hint:
            click.echo(f"{'':4}  {'':{width}}  hint: {check.hint}")
    failed = sum(1 for c in checks if not c.ok)
    click.echo(f"{failed} problem(s) found" if failed else "all checks passed")
    if failed:
        sys.exit(1)
