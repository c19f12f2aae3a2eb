"""The public names: a curated, sorted ``__all__`` that imports, and a typed package."""

from __future__ import annotations

from pathlib import Path

import wxmp
from wxmp import errors


def test_all_is_sorted_unique_and_importable():
    assert wxmp.__all__ == sorted(set(wxmp.__all__))
    for name in wxmp.__all__:
        assert getattr(wxmp, name) is not None, name


def test_contract_names_are_public():
    for name in (
        "WxMP",
        "Callback",
        "Router",
        "ApiError",
        "ConfigError",
        "TextReply",
        "NewsReply",
        "signals",
    ):
        assert name in wxmp.__all__


def test_every_api_error_subclass_is_exported_and_documented():
    doc = errors.__doc__
    for cls in errors.ApiError.__subclasses__():
        assert cls.__name__ in wxmp.__all__
        assert cls.__name__ in doc
        for code in cls.codes:
            assert errors.ApiError.from_response(code).__class__ is cls


def test_package_is_typed():
    assert (Path(wxmp.__file__).parent / "py.typed").exists()
