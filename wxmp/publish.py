"""Publishing a Markdown article: the logic of ``flask wxmp publish`` (no Flask here).

:func:`read_article` splits a Markdown file into front matter (``title``, ``author``, ``digest``,
``source_url``, ``cover``, ``comments``, ``fans_only_comments``) and body; :func:`render` turns the
body into the inline-styled HTML WeChat's editor keeps (it drops ``<style>`` and classes) and lists
the images. :class:`Publisher` uploads local and remote images with ``media/uploadimg`` and swaps
their URLs in, uploads the cover as permanent material, creates (or updates) the draft, and on
request publishes it and waits for the result, or sends a preview. Uploads are remembered in
``.wxmp-uploads.json`` next to the article, by content hash and account, so a re-run on an unchanged
file uploads nothing and reuses its draft.

Needs the ``publish`` extra (markdown-it-py): ``pip install 'flask-wxmp[publish]'``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .api.draft import validate_article
from .api.freepublish import PUBLISH_STATUS
from .errors import ApiError, WxMPError

__all__ = [
    "STYLES",
    "ArticleSource",
    "PublishError",
    "PublishResult",
    "Publisher",
    "read_article",
    "render",
]

CACHE_NAME = ".wxmp-uploads.json"
MAX_IMAGE = 1024 * 1024  # media/uploadimg: jpg/png under 1 MB
MAX_COVER = 10 * 1024 * 1024  # permanent image material
HOSTED = ("mmbiz.qpic.cn", "mmbiz.qlogo.cn")  # already on WeChat: left as they are

#: Inline styles per tag: WeChat's editor keeps ``style`` attributes and drops stylesheets.
STYLES: dict[str, str] = {
    "p": "margin:0 0 1em;line-height:1.75;font-size:16px;color:#333;",
    "h1": "margin:1.2em 0 .6em;font-size:22px;font-weight:bold;line-height:1.4;color:#222;",
    "h2": "margin:1.2em 0 .6em;font-size:20px;font-weight:bold;line-height:1.4;color:#222;",
    "h3": "margin:1em 0 .5em;font-size:18px;font-weight:bold;line-height:1.4;color:#222;",
    "h4": "margin:1em 0 .5em;font-size:16px;font-weight:bold;color:#222;",
    "h5": "margin:1em 0 .5em;font-size:16px;font-weight:bold;color:#222;",
    "h6": "margin:1em 0 .5em;font-size:16px;font-weight:bold;color:#555;",
    "blockquote": "margin:1em 0;padding:.5em 1em;border-left:4px solid #d0d7de;background:#f6f8fa;"
    "color:#666;",
    "ul": "margin:0 0 1em;padding-left:1.5em;",
    "ol": "margin:0 0 1em;padding-left:1.5em;",
    "li": "margin:.25em 0;line-height:1.75;",
    "a": "color:#576b95;text-decoration:none;",
    "strong": "font-weight:bold;",
    "em": "font-style:italic;",
    "code": "padding:.1em .3em;border-radius:3px;background:#f6f8fa;font-family:Menlo,Consolas,monospace;"
    "font-size:.9em;",
    "pre": "margin:0 0 1em;padding:1em;border-radius:4px;background:#f6f8fa;overflow-x:auto;font-size:14px;"
    "line-height:1.5;",
    "img": "display:block;max-width:100%;height:auto;margin:1em auto;",
    "hr": "margin:1.5em 0;border:none;border-top:1px solid #eee;",
    "table": "margin:0 0 1em;border-collapse:collapse;width:100%;",
    "th": "padding:.4em .6em;border:1px solid #ddd;background:#f6f8fa;font-weight:bold;",
    "td": "padding:.4em .6em;border:1px solid #ddd;",
}
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_KEYS = {"title", "author", "digest", "source_url", "cover", "comments", "fans_only_comments"}


class PublishError(WxMPError, ValueError):
    """The article cannot be published as it is (says what to change), or publishing failed."""


class Groups(Protocol):
    """What :class:`Publisher` needs: the account's API groups (``wx`` or an Account)."""

    @property
    def media(self) -> Any: ...
    @property
    def draft(self) -> Any: ...
    @property
    def freepublish(self) -> Any: ...
    @property
    def mass(self) -> Any: ...


@dataclass
class ArticleSource:
    """A Markdown article: its front matter and body."""

    path: Path
    title: str
    body: str
    author: str | None = None
    digest: str | None = None
    source_url: str | None = None
    cover: str | None = None
    comments: bool = False
    fans_only_comments: bool = False


@dataclass
class PublishResult:
    """What :meth:`Publisher.prepare` and :meth:`Publisher.submit` did."""

    media_id: str
    uploaded: int = 0
    reused: int = 0
    draft: str = "created"  # "created", "updated" or "unchanged"
    publish_id: str | None = None
    article_id: str | None = None
    urls: list[str] = field(default_factory=list)


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def read_article(path: str | os.PathLike[str]) -> ArticleSource:
    """Read a Markdown file with optional ``---`` front matter (``key: value`` lines).

    Without a ``title`` the first ``# heading`` becomes the title and leaves the body.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    meta: dict[str, str] = {}
    found = _FRONT.match(text)
    if found:
        text = text[found.end() :]
        for number, line in enumerate(found.group(1).splitlines(), start=2):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            key, sep, value = line.partition(":")
            key = key.strip().lower()
            if not sep or key not in _KEYS:
                raise PublishError(f"{path.name}:{number}: front matter takes {', '.join(sorted(_KEYS))}")
            meta[key] = value.strip().strip("\"'")
    title = meta.get("title")
    if not title:
        heading = re.search(r"^#[ \t]+(.+?)[ \t#]*$", text, re.MULTILINE)
        if heading is None:
            raise PublishError(f"{path.name}: no title (front matter 'title:' or a first '# heading')")
        title = heading.group(1).strip()
        text = text[: heading.start()] + text[heading.end() :]
    return ArticleSource(
        path=path,
        title=title,
        body=text.strip(),
        author=meta.get("author") or None,
        digest=meta.get("digest") or None,
        source_url=meta.get("source_url") or None,
        cover=meta.get("cover") or None,
        comments=_flag(meta.get("comments", "")),
        fans_only_comments=_flag(meta.get("fans_only_comments", "")),
    )


def _markdown() -> Any:
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - depends on the environment
        raise PublishError(
            "publishing Markdown needs the publish extra: pip install 'flask-wxmp[publish]'"
        ) from None
    from markdown_it.common.utils import escapeHtml

    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def fence(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        code = escapeHtml(tokens[idx].content)
        pre = STYLES["pre"]
        return f'<pre style="{pre}"><code style="font-family:Menlo,Consolas,monospace;">{code}</code></pre>\n'

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", fence)
    return md


def _style(tokens: list[Any], images: list[str]) -> None:
    for token in tokens:
        if token.nesting >= 0 and token.tag in STYLES:
            token.attrSet("style", STYLES[token.tag])
        if token.type == "image":
            images.append(str(token.attrGet("src") or ""))
        if token.children:
            _style(token.children, images)


def render(markdown: str, replace: Callable[[str], str] | None = None) -> tuple[str, list[str]]:
    """Markdown -> (inline-styled HTML, image sources in order); ``replace`` maps each image source.

    Raw HTML in the Markdown is escaped, not passed through (WeChat strips most of it anyway).
    """
    md = _markdown()
    tokens = md.parse(markdown)
    images: list[str] = []
    _style(tokens, images)
    if replace is not None:
        _replace(tokens, replace)
    return md.renderer.render(tokens, md.options, {}), images


def _replace(tokens: list[Any], replace: Callable[[str], str]) -> None:
    for token in tokens:
        if token.type == "image":
            token.attrSet("src", replace(str(token.attrGet("src") or "")))
        if token.children:
            _replace(token.children, replace)


def _kind(content: bytes) -> str | None:
    if content.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if content[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _fetch_remote(url: str, limit: int, timeout: float) -> bytes:
    import requests

    try:
        with requests.get(url, timeout=timeout, stream=True) as response:
            if response.status_code != 200:
                raise PublishError(f"image {url}: HTTP {response.status_code}")
            content = response.raw.read(limit + 1, decode_content=True)
    except requests.RequestException as exc:
        raise PublishError(f"image {url}: could not be downloaded ({type(exc).__name__})") from None
    return bytes(content)


class Publisher:
    """Turn a Markdown file into a draft (and a publication or a preview) on one account.

    ``api`` is the account's API groups (``wx``); ``appid`` keys the upload memory; ``echo``
    prints progress; ``sleep`` waits between polls (tests pass a fake clock's).
    """

    def __init__(
        self,
        api: Groups,
        appid: str,
        *,
        echo: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep,
        fetch: Callable[[str, int, float], bytes] = _fetch_remote,
        timeout: float = 10.0,
    ) -> None:
        self.api = api
        self.appid = appid or "-"
        self.echo = echo
        self.sleep = sleep
        self.fetch = fetch
        self.timeout = timeout

    # -- the upload memory ------------------------------------------------------------------------

    def _load(self, folder: Path) -> dict[str, Any]:
        try:
            data = json.loads((folder / CACHE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        account = data.get(self.appid) if isinstance(data, dict) else None
        return account if isinstance(account, dict) else {}

    def _save(self, folder: Path, memory: dict[str, Any]) -> None:
        path = folder / CACHE_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[self.appid] = memory
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    # -- images -----------------------------------------------------------------------------------

    def _read(self, src: str, folder: Path, limit: int) -> bytes:
        parts = urlsplit(src)
        if parts.scheme in ("http", "https"):
            content = self.fetch(src, limit, self.timeout)
        elif parts.scheme in ("", "file"):
            local = Path(unquote(parts.path)) if parts.scheme == "file" else Path(src)
            if not local.is_absolute():
                local = folder / local
            try:
                content = local.read_bytes()
            except OSError as exc:
                raise PublishError(f"image {src}: cannot be read ({exc.strerror or exc})") from None
        else:
            raise PublishError(f"image {src}: only local files and http(s) URLs can be uploaded")
        if len(content) > limit:
            raise PublishError(f"image {src}: larger than {limit // (1024 * 1024)} MB")
        return content

    @staticmethod
    def _reused(key: str, counts: dict[str, set[str]]) -> None:
        if key not in counts["uploaded"]:
            counts["reused"].add(key)

    def _image(self, src: str, folder: Path, memory: dict[str, Any], counts: dict[str, set[str]]) -> str:
        if not src or urlsplit(src).hostname in HOSTED:
            return src
        content = self._read(src, folder, MAX_IMAGE)
        kind = _kind(content)
        if kind not in ("jpg", "png"):
            raise PublishError(f"image {src}: article images must be JPEG or PNG (WeChat's uploadimg)")
        key = "img:" + hashlib.sha256(content).hexdigest()
        if key in memory:
            self._reused(key, counts)
            return str(memory[key])
        url = self.api.media.upload_image(content, filename=f"{key[4:16]}.{kind}")
        memory[key] = url
        counts["uploaded"].add(key)
        self.echo(f"uploaded {src}")
        return str(url)

    def _cover(self, src: str, folder: Path, memory: dict[str, Any], counts: dict[str, set[str]]) -> str:
        content = self._read(src, folder, MAX_COVER)
        kind = _kind(content)
        if kind is None:
            raise PublishError(f"cover {src}: must be a JPEG, PNG or GIF image")
        key = "cover:" + hashlib.sha256(content).hexdigest()
        if key in memory:
            self._reused(key, counts)
            return str(memory[key])
        media_id = self.api.media.add("image", content, filename=f"cover-{key[6:18]}.{kind}")["media_id"]
        memory[key] = media_id
        counts["uploaded"].add(key)
        self.echo(f"uploaded cover {src}")
        return str(media_id)

    # -- the steps --------------------------------------------------------------------------------

    def prepare(self, path: str | os.PathLike[str], cover: str | None = None) -> PublishResult:
        """Upload what is new and create or update the article's draft; returns its media_id."""
        source = read_article(path)
        folder = source.path.parent
        memory = self._load(folder)
        counts: dict[str, set[str]] = {"uploaded": set(), "reused": set()}
        _, images = render(source.body)
        cover_src = cover or source.cover or next((i for i in images if i), None)
        if cover_src is None:
            raise PublishError(
                f"{source.path.name}: no cover: pass --cover IMG, set 'cover:' or add an image"
            )
        # Check what WeChat will check before uploading anything.
        validate_article(self._article(source, "<p>.</p>", "-"), source.path.name)
        try:
            html, _ = render(source.body, lambda src: self._image(src, folder, memory, counts))
            thumb = self._cover(cover_src, folder, memory, counts)
        finally:
            self._save(folder, memory)  # what was uploaded stays remembered, even after a failure
        item = validate_article(self._article(source, html, thumb), source.path.name)
        result = PublishResult(media_id="", uploaded=len(counts["uploaded"]), reused=len(counts["reused"]))
        result.media_id, result.draft = self._draft(source, item, memory)
        self._save(folder, memory)
        return result

    @staticmethod
    def _article(source: ArticleSource, html: str, thumb: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "article_type": "news",
            "title": source.title,
            "content": html,
            "thumb_media_id": thumb,
            "need_open_comment": 1 if source.comments else 0,
            "only_fans_can_comment": 1 if source.fans_only_comments else 0,
        }
        for key, value in (("author", source.author), ("digest", source.digest)):
            if value:
                item[key] = value
        if source.source_url:
            item["content_source_url"] = source.source_url
        return item

    def _draft(self, source: ArticleSource, item: dict[str, Any], memory: dict[str, Any]) -> tuple[str, str]:
        digest = hashlib.sha256(json.dumps(item, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        key = "draft:" + source.path.name
        known = memory.get(key)
        if isinstance(known, dict) and known.get("media_id"):
            media_id = str(known["media_id"])
            try:
                self.api.draft.get(media_id)
            except ApiError:
                known = None  # deleted or published since: make a new one
            else:
                if known.get("hash") == digest:
                    return media_id, "unchanged"
                self.api.draft.update(media_id, 0, item)
                memory[key] = {"media_id": media_id, "hash": digest}
                return media_id, "updated"
        media_id = self.api.draft.add([item])
        memory[key] = {"media_id": media_id, "hash": digest}
        return media_id, "created"

    def preview(self, media_id: str, openid: str) -> None:
        """Send the draft as a mass-message preview to one follower."""
        self.api.mass.preview(openid, mpnews=media_id)

    def submit(
        self, result: PublishResult, *, interval: float = 2.0, timeout: float = 300.0
    ) -> PublishResult:
        """Publish the draft and poll ``freepublish/get`` until WeChat decides, echoing progress."""
        result.publish_id = publish_id = self.api.freepublish.submit(result.media_id)
        self.echo(f"publishing (publish_id {publish_id})")
        waited = 0.0
        while True:
            state = self.api.freepublish.get(publish_id)
            status = int(state.get("publish_status", 1))
            if status != 1:
                break
            if waited >= timeout:
                later = f"wx.freepublish.get({publish_id!r})"
                raise PublishError(f"still publishing after {int(waited)}s: check later with {later}")
            self.echo(f"  publishing... {int(waited)}s")
            self.sleep(interval)
            waited += interval
        if status != 0:
            failed = state.get("fail_idx") or []
            which = f" (articles {', '.join(str(i) for i in failed)})" if failed else ""
            raise PublishError(
                f"WeChat did not publish{which}: {PUBLISH_STATUS.get(status, f'status {status}')}"
            )
        result.article_id = str(state.get("article_id", ""))
        items = (state.get("article_detail") or {}).get("item") or []
        result.urls = [str(i.get("article_url", "")) for i in items]
        return result
