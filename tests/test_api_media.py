"""wx.media over real HTTP against FakeWeChat: multipart uploads, downloads, permanent material."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from wxmp import ApiError
from wxmp.testing import FakeWeChat
from wxmp.testing.fake_api.media import materials, media

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 100


@pytest.fixture
def wx(fake_wechat: FakeWeChat, make_app: Any) -> Any:
    return make_app(fake_wechat)[1]


def _part_header(body: bytes) -> bytes:
    start = body.index(b'name="media"')
    return body[start : body.index(b"\r\n\r\n", start)]


def test_upload_from_a_path_with_a_chinese_name(wx: Any, fake_wechat: FakeWeChat, tmp_path: Path) -> None:
    path = tmp_path / "中文图片.jpg"
    path.write_bytes(JPEG)
    result = wx.media.upload("image", path)
    assert result["type"] == "image" and result["media_id"]

    (call,) = fake_wechat.calls("/cgi-bin/media/upload")
    assert call.method == "POST"
    assert call.args == {"access_token": wx.access_token, "type": "image"}
    assert call.content_type.startswith("multipart/form-data; boundary=")
    header = _part_header(call.body)
    assert b'filename="%E4%B8%AD%E6%96%87%E5%9B%BE%E7%89%87.jpg"' in header
    assert header.isascii()
    assert b"Content-Type: image/jpeg" in call.body
    assert JPEG in call.body

    assert wx.media.get(result["media_id"]) == JPEG
    (download,) = fake_wechat.calls("/cgi-bin/media/get")
    assert download.method == "GET" and download.args["media_id"] == result["media_id"]


def test_upload_bytes_and_file_objects(wx: Any, fake_wechat: FakeWeChat) -> None:
    voice = wx.media.upload("voice", b"ID3" + b"\x00" * 50)  # bytes: a default name per kind
    assert b'filename="voice.mp3"' in _part_header(fake_wechat.calls("/cgi-bin/media/upload")[0].body)

    fileobj = io.BytesIO(JPEG)
    fileobj.name = "/somewhere/photo.png"  # type: ignore[attr-defined]
    thumb = wx.media.upload("thumb", io.BytesIO(JPEG), filename="t.jpg")
    image = wx.media.upload("image", fileobj)
    header = _part_header(fake_wechat.calls("/cgi-bin/media/upload")[2].body)
    assert b'filename="photo.png"' in header

    assert media(fake_wechat)[voice["media_id"]]["content"].startswith(b"ID3")
    assert "thumb_media_id" in thumb  # WeChat's key for thumbs
    assert media(fake_wechat)[image["media_id"]]["content"] == JPEG


def test_video_download_is_json(wx: Any) -> None:
    media_id = wx.media.upload("video", MP4, filename="clip.mp4")["media_id"]
    got = wx.media.get(media_id)
    assert isinstance(got, dict) and got["video_url"].endswith(".mp4")


def test_upload_errors(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ValueError, match="media kind 'gif'"):
        wx.media.upload("gif", JPEG)
    with pytest.raises(ApiError) as info:  # wrong extension for the kind
        wx.media.upload("voice", JPEG, filename="a.jpg")
    assert info.value.errcode == 40005
    with pytest.raises(ApiError) as info:  # thumbs are at most 64 KB
        wx.media.upload("thumb", JPEG * 80, filename="big.jpg")
    assert info.value.errcode == 40006
    with pytest.raises(ApiError) as info:
        wx.media.get("NO_SUCH_MEDIA")
    assert info.value.errcode == 40007


def test_fake_refuses_raw_utf8_filenames(wx: Any, fake_wechat: FakeWeChat) -> None:
    # what requests sends for a non-ASCII name left alone
    answer = requests.post(
        f"{fake_wechat.url}/cgi-bin/media/upload",
        params={"access_token": wx.access_token, "type": "image"},
        files={"media": ("中文.jpg", JPEG, "image/jpeg")},
        timeout=5,
    ).json()
    assert answer["errcode"] == 40005


def test_temporary_media_expire_after_3_days(wx: Any, fake_wechat: FakeWeChat) -> None:
    media_id = wx.media.upload("image", JPEG, filename="a.jpg")["media_id"]
    media(fake_wechat)[media_id]["created_at"] -= 3 * 24 * 3600 + 1
    with pytest.raises(ApiError) as info:
        wx.media.get(media_id)
    assert info.value.errcode == 40007


def test_upload_image_returns_the_url(wx: Any, fake_wechat: FakeWeChat) -> None:
    url = wx.media.upload_image(PNG, filename="图.png")
    assert url.startswith("http://mmbiz.qpic.cn/mmbiz_png/")
    (call,) = fake_wechat.calls("/cgi-bin/media/uploadimg")
    assert b'filename="%E5%9B%BE.png"' in _part_header(call.body)


def test_permanent_material_round_trip(wx: Any, fake_wechat: FakeWeChat) -> None:
    image = wx.media.add("image", JPEG, filename="logo.jpg")
    assert image["url"].startswith("http://")
    (call,) = fake_wechat.calls("/cgi-bin/material/add_material")
    assert call.args["type"] == "image" and b'name="media"' in call.body

    video = wx.media.add("video", MP4, title="宣传片", introduction="一分钟", filename="promo.mp4")
    call = fake_wechat.calls("/cgi-bin/material/add_material")[1]
    start = call.body.index(b'name="description"')
    part = call.body[call.body.index(b"\r\n\r\n", start) + 4 :]
    description = json.loads(part[: part.index(b"\r\n--")].decode())
    assert description == {"title": "宣传片", "introduction": "一分钟"}
    assert "宣传片".encode() in call.body

    assert wx.media.get_material(image["media_id"]) == JPEG
    assert fake_wechat.calls("/cgi-bin/material/get_material")[0].json == {"media_id": image["media_id"]}
    got = wx.media.get_material(video["media_id"])
    assert got["title"] == "宣传片" and got["description"] == "一分钟" and got["down_url"]

    assert wx.media.count() == {"voice_count": 0, "video_count": 1, "image_count": 1, "news_count": 0}
    wx.media.delete_material(image["media_id"])
    assert fake_wechat.calls("/cgi-bin/material/del_material")[0].json == {"media_id": image["media_id"]}
    assert image["media_id"] not in materials(fake_wechat)
    with pytest.raises(ApiError) as info:
        wx.media.get_material(image["media_id"])
    assert info.value.errcode == 40007


def test_permanent_video_needs_a_title(wx: Any, fake_wechat: FakeWeChat) -> None:
    with pytest.raises(ValueError, match="title"):
        wx.media.add("video", MP4, filename="v.mp4")
    assert fake_wechat.count("/cgi-bin/material/add_material") == 0


def test_iter_materials_pages_by_20(wx: Any, fake_wechat: FakeWeChat) -> None:
    ids = [wx.media.add("image", JPEG, filename=f"p{i}.jpg")["media_id"] for i in range(45)]
    wx.media.add("voice", b"ID3" + b"\x00" * 10, filename="v.mp3")
    items = list(wx.media.iter_materials("image"))
    assert [i["media_id"] for i in items] == ids
    pages = fake_wechat.calls("/cgi-bin/material/batchget_material")
    assert [p.json for p in pages] == [
        {"type": "image", "offset": 0, "count": 20},
        {"type": "image", "offset": 20, "count": 20},
        {"type": "image", "offset": 40, "count": 20},
    ]
    assert list(wx.media.iter_materials("news")) == []


def test_upload_survives_the_token_retry_with_the_same_bytes(wx: Any, fake_wechat: FakeWeChat) -> None:
    wx.access_token  # noqa: B018 (fetch the token first)
    fake_wechat.revoke_tokens()  # someone else rotated it: the upload is answered 40001 once
    result = wx.media.upload("image", io.BytesIO(JPEG), filename="a.jpg")
    first, second = fake_wechat.calls("/cgi-bin/media/upload")
    assert first.args["access_token"] != second.args["access_token"]
    assert JPEG in first.body and JPEG in second.body  # the file object was read once, sent twice
    assert media(fake_wechat)[result["media_id"]]["content"] == JPEG


@pytest.mark.parametrize(
    ("call", "kind", "filename", "accepted"),
    [
        ("upload", "image", "a.bmp", False),  # temporary images: png/jpeg/jpg/gif
        ("add", "image", "a.bmp", True),  # permanent images add bmp
        ("upload", "voice", "a.speex", False),
        ("add", "voice", "a.speex", False),
        ("add", "voice", "a.wma", True),
        ("add", "voice", "a.wav", True),
        ("upload", "voice", "a.wav", False),  # temporary voice: amr/mp3
        ("upload", "voice", "a.amr", True),
    ],
)
def test_media_formats(wx: Any, call: str, kind: str, filename: str, accepted: bool) -> None:
    upload = getattr(wx.media, call)
    if accepted:
        assert upload(kind, b"RIFF....", filename=filename)["media_id"]
    else:
        with pytest.raises(ApiError) as info:
            upload(kind, b"RIFF....", filename=filename)
        assert info.value.errcode == 40005
