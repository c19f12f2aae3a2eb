"""``flask wxmp ...``: manage the account and run the central refresher from the terminal."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from .errors import ApiError, WxMPError

wxmp_cli = AppGroup("wxmp", help="WeChat Official Account tools (wxmp).")


def _ext() -> Any:
    ext = current_app.extensions.get("wxmp")
    if ext is None:
        raise click.ClickException("this app has no WxMP extension (wx = WxMP(app))")
    return ext


def fail(exc: WxMPError) -> None:
    """Print an error as one line with a hint, and exit non-zero (no traceback)."""
    if isinstance(exc, ApiError):
        click.echo(f"Error: WeChat errcode {exc.errcode}: {exc.errmsg} ({exc.path})", err=True)
    else:
        click.echo(f"Error: {exc}", err=True)
    sys.exit(1)


@wxmp_cli.command("refresher")
def refresher_command() -> None:
    """Run the central token refresher in the foreground (for WXMP_REFRESHER='external' workers).

    Keeps the access_token (and jsapi_ticket) fresh in the shared cache; stops on SIGTERM/Ctrl-C.
    Only this host needs the AppSecret and a place in WeChat's API IP whitelist.
    """
    from .refresher import Refresher

    state = _ext().state()
    if not state.settings.secret:
        raise click.ClickException("WXMP_SECRET is not set: the central refresher needs it")
    if state.refresher is not None:
        state.refresher.stop()
    managers = list(state.tokens.values())
    if state.settings.refresher == "external":
        raise click.ClickException(
            "WXMP_REFRESHER is 'external' in this config: the refresher itself must be allowed to fetch "
            "(run it with WXMP_REFRESHER=thread or unset)"
        )
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("wxmp").setLevel(logging.INFO)
    refresher = Refresher(managers)

    def on_term(signum: int, frame: Any) -> None:
        refresher.stop(timeout=0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    click.echo(f"wxmp refresher running (pid {__import__('os').getpid()}, cache {state.store.backend})")
    refresher.run()
    click.echo("wxmp refresher stopped")
