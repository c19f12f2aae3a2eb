"""``flask wxmp publish`` and wxmp.publish end to end against FakeWeChat: Markdown in, a draft (and a
publication) out, each image uploaded once."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from click.testing import Result
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from wxmp.messages import PublishJobFinishEvent
from wxmp.publish import CACHE_NAME, STYLES, Publisher, PublishError, read_article, render
from wxmp.testing import FakeWeChat, WeChatUser
from wxmp.testing.clock import FakeClock
from wxmp.testing.fake_api.mass import mass_jobs
from wxmp.testing.fake_api.media import article_images, materials
from wxmp.testing.fake_api.publish import drafts, publish_event_xml, revoke_publishing, set_publish_outcome

UPLOADIMG = "/cgi-bin/media/uploadimg"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x01" * 200


def png(seed: int) -> bytes:
    """A real 1x1 PNG whose pixel depends on ``seed``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"\x00" + bytes([seed % 256, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


ARTICLE = """---
title: 春季上新
author: 小编
digest: 三款新品
source_url: https://example.com/spring
comments: yes
---

## 新品一

第一段，**加粗**和`代码`。

![一](img/one.png)

> 引用

![二](img/two.jpg)

![一又一次](img/one.png)

```python
print("<b>")
```
"""


@pytest.fixture
def app(make_app: Any, fake_wechat: FakeWeChat) -> flask.Flask:
    app, _ = make_app(fake_wechat, REFRESHER=False)
    return app


@pytest.fixture
def article(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "one.png").write_bytes(png(1))
    (tmp_path / "img" / "two.jpg").write_bytes(JPEG)
    (tmp_path / "cover.jpg").write_bytes(JPEG + b"cover")
    path = tmp_path / "spring.md"
    path.write_text(ARTICLE, encoding="utf-8")
    return path


def run(app: flask.Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["wxmp", "publish", *args])


def test_render_styles_inline_and_escapes_html() -> None:
    html, images = render(
        "# H\n\npara <script>x</script>\n\n> q\n\n- a\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "![i](a.png)\n\n```\nx<1\n```"
    )
    assert f'<h1 style="{STYLES["h1"]}">H</h1>' in html
    assert f'<blockquote style="{STYLES["blockquote"]}">' in html
    assert f'<td style="{STYLES["td"]}">1</td>' in html
    assert f'<pre style="{STYLES["pre"]}"><code' in html and "x&lt;1" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "class=" not in html and "<style" not in html
    assert images == ["a.png"]


def test_read_article_front_matter_and_heading_title(tmp_path: Path) -> None:
    source = read_article(_write(tmp_path / "a.md", ARTICLE))
    assert (source.title, source.author, source.digest) == ("春季上新", "小编", "三款新品")
    assert source.source_url == "https://example.com/spring" and source.comments is True
    plain = read_article(_write(tmp_path / "b.md", "# 标题在这里\n\n正文"))
    assert plain.title == "标题在这里" and plain.body == "正文"
    with pytest.raises(PublishError, match="front matter takes"):
        read_article(_write(tmp_path / "c.md", "---\ncolour: red\n---\n# t\n"))
    with pytest.raises(PublishError, match="no title"):
        read_article(_write(tmp_path / "d.md", "just text"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_publish_creates_a_draft_once_and_uploads_each_image_once(
    app: flask.Flask, fake_wechat: FakeWeChat, article: Path
) -> None:
    result = run(app, str(article), "--cover", str(article.parent / "cover.jpg"))
    assert result.exit_code == 0, result.output + result.stderr
    assert "created (3 uploaded" in result.stdout  # two images and the cover
    assert fake_wechat.count(UPLOADIMG) == 2  # one.png appears twice, uploaded once
    assert fake_wechat.count("/cgi-bin/material/add_material") == 1
    ((media_id, draft),) = drafts(fake_wechat).items()
    assert media_id in result.stdout
    (item,) = draft["news_item"]
    assert item["title"] == "春季上新" and item["author"] == "小编" and item["digest"] == "三款新品"
    assert item["content_source_url"] == "https://example.com/spring" and item["need_open_comment"] == 1
    assert materials(fake_wechat)[item["thumb_media_id"]]["type"] == "image"
    hosted = list(article_images(fake_wechat))
    assert len(hosted) == 2 and all(url in item["content"] for url in hosted)
    assert item["content"].count(hosted[0]) == 2  # both places that show one.png
    assert "img/one.png" not in item["content"] and 'style="' in item["content"]
    assert (article.parent / CACHE_NAME).exists()

    again = run(app, str(article), "--cover", str(article.parent / "cover.jpg"))
    assert again.exit_code == 0 and "unchanged (0 uploaded, 3 already on WeChat)" in again.stdout
    assert fake_wechat.count(UPLOADIMG) == 2 and fake_wechat.count("/cgi-bin/material/add_material") == 1
    assert fake_wechat.count("/cgi-bin/draft/add") == 1

    article.write_text(ARTICLE.replace("第一段", "改过的第一段"), encoding="utf-8")
    edited = run(app, str(article), "--cover", str(article.parent / "cover.jpg"))
    assert edited.exit_code == 0 and f"draft {media_id} updated (0 uploaded" in edited.stdout
    assert "改过的第一段" in drafts(fake_wechat)[media_id]["news_item"][0]["content"]
    assert fake_wechat.count(UPLOADIMG) == 2 and len(drafts(fake_wechat)) == 1


def test_submit_waits_for_the_verdict_and_the_event_agrees(
    fake_wechat: FakeWeChat, make_app: Any, article: Path
) -> None:
    app, wx = make_app(fake_wechat, TOKEN="tok", REFRESHER=False)
    events: list[PublishJobFinishEvent] = []
    wx.on("publishjobfinish")(events.append)

    clock = FakeClock()
    lines: list[str] = []
    publisher = Publisher(wx, fake_wechat.appid, echo=lines.append, sleep=clock.sleep)
    set_publish_outcome(fake_wechat, polls=3)
    result = publisher.submit(publisher.prepare(article))  # the first image is the cover
    assert clock.slept == [2.0, 2.0, 2.0] and fake_wechat.count("/cgi-bin/freepublish/get") == 4
    assert sum("publishing..." in line for line in lines) == 3
    assert result.article_id and len(result.urls) == 1

    WeChatUser(app, token="tok").send_raw(publish_event_xml(fake_wechat, str(result.publish_id)))
    (event,) = events
    assert event.ok and event.article_id == result.article_id and event.article_urls == result.urls


def test_submit_and_preview_from_the_cli(app: flask.Flask, fake_wechat: FakeWeChat, article: Path) -> None:
    fake_wechat.add_user("oEDITOR")
    set_publish_outcome(fake_wechat, polls=0)
    result = run(app, str(article), "--submit", "--preview", "oEDITOR")
    assert result.exit_code == 0, result.output + result.stderr
    assert "preview sent to oEDITOR" in result.stdout and "published: article_id A" in result.stdout
    (media_id,) = drafts(fake_wechat)
    (preview,) = fake_wechat.calls("/cgi-bin/message/mass/preview")
    assert preview.json == {"msgtype": "mpnews", "mpnews": {"media_id": media_id}, "touser": "oEDITOR"}
    assert not mass_jobs(fake_wechat)  # a preview is not a mass send


def test_refusals_are_clean_and_early(app: flask.Flask, fake_wechat: FakeWeChat, article: Path) -> None:
    folder = article.parent
    long_title = _write(folder / "long.md", "---\ntitle: " + "长" * 33 + "\n---\n![x](img/one.png)\n")
    result = run(app, str(long_title))
    assert result.exit_code == 1 and "title is 33 characters" in result.stderr
    assert fake_wechat.count(UPLOADIMG) == 0  # refused before uploading anything

    missing = _write(folder / "missing.md", "# t\n\n![x](img/nope.png)\n")
    result = run(app, str(missing), "--cover", str(folder / "cover.jpg"))
    assert result.exit_code == 1 and "img/nope.png: cannot be read" in result.stderr

    (folder / "img" / "anim.gif").write_bytes(b"GIF89a" + b"\x00" * 20)
    gif = _write(folder / "gif.md", "# t\n\n![x](img/anim.gif)\n")
    result = run(app, str(gif), "--cover", str(folder / "cover.jpg"))
    assert result.exit_code == 1 and "must be JPEG or PNG" in result.stderr

    no_cover = _write(folder / "nocover.md", "# t\n\ntext only\n")
    result = run(app, str(no_cover))
    assert result.exit_code == 1 and "no cover" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_lost_publishing_right_and_refused_articles(
    app: flask.Flask, fake_wechat: FakeWeChat, article: Path
) -> None:
    revoke_publishing(fake_wechat)
    result = run(app, str(article), "--submit")
    assert result.exit_code == 1 and "48001" in result.stderr and "publish it by hand" in result.stderr
    assert len(drafts(fake_wechat)) == 1  # the draft exists for the admin console

    revoke_publishing(fake_wechat, False)
    set_publish_outcome(fake_wechat, status=4, fail_idx=(1,), polls=0)
    result = run(app, str(article), "--submit")
    assert result.exit_code == 1 and "review" in result.stderr and "articles 1" in result.stderr


def test_submit_gives_up_after_the_timeout(fake_wechat: FakeWeChat, make_app: Any, article: Path) -> None:
    _, wx = make_app(fake_wechat, REFRESHER=False)
    clock = FakeClock()
    publisher = Publisher(wx, fake_wechat.appid, echo=lambda _: None, sleep=clock.sleep)
    set_publish_outcome(fake_wechat, polls=1000)
    with pytest.raises(PublishError, match="still publishing"):
        publisher.submit(publisher.prepare(article), interval=5, timeout=20)
    assert fake_wechat.count("/cgi-bin/freepublish/get") == 5  # polls, not a hot loop


@pytest.fixture
def image_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server with /a.png, /big.png (over 1 MB) and /404."""
    hits: list[str] = []

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        hits.append(request.path)
        bodies = {"/a.png": png(7), "/big.png": png(8) + b"\x00" * (1024 * 1024)}
        body = bodies.get(request.path)
        response = Response(body, mimetype="image/png") if body else Response("no", status=404)
        return response(environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()
    server.server_close()


def test_remote_images_on_loopback(
    app: flask.Flask, fake_wechat: FakeWeChat, article: Path, image_server: tuple[str, list[str]]
) -> None:
    base, hits = image_server
    remote = _write(article.parent / "remote.md", f"# 远程\n\n![a]({base}/a.png)\n")
    result = run(app, str(remote), "--cover", str(article.parent / "cover.jpg"))
    assert result.exit_code == 0, result.stderr
    assert hits == ["/a.png"] and fake_wechat.count(UPLOADIMG) == 1
    (url,) = article_images(fake_wechat)
    assert f"{base}/a.png" not in next(iter(drafts(fake_wechat).values()))["news_item"][0]["content"]
    assert run(app, str(remote), "--cover", str(article.parent / "cover.jpg")).exit_code == 0
    assert fake_wechat.count(UPLOADIMG) == 1  # downloaded again to compare, not uploaded again

    for name, message in (("big.png", "larger than 1 MB"), ("404", "HTTP 404")):
        bad = _write(article.parent / "bad.md", f"# 坏\n\n![a]({base}/{name})\n")
        result = run(app, str(bad), "--cover", str(article.parent / "cover.jpg"))
        assert result.exit_code == 1 and message in result.stderr
    assert url


def test_hosted_images_are_left_alone(fake_wechat: FakeWeChat, make_app: Any, article: Path) -> None:
    _, wx = make_app(fake_wechat, REFRESHER=False)
    hosted = wx.media.upload_image(JPEG, filename="h.jpg")
    page = _write(article.parent / "hosted.md", f"# 已托管\n\n![h]({hosted})\n")
    publisher = Publisher(wx, fake_wechat.appid, echo=lambda _: None, sleep=time.sleep)
    publisher.prepare(page, str(article.parent / "cover.jpg"))
    assert fake_wechat.count(UPLOADIMG) == 1  # only the one made above
    assert hosted in next(iter(drafts(fake_wechat).values()))["news_item"][0]["content"]
