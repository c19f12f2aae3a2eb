"""Where the sandbox's and the status page's templates live (shared by both adapters)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["templates_dir"]


def templates_dir() -> Path:
    """The folder holding the sandbox and status templates.

    An installed wheel ships them as the data package ``wxmp._templates``; a source checkout has
    them in ``<repo>/templates``.
    """
    try:
        resources = importlib.resources.files("wxmp._templates")
        for entry in resources.iterdir():  # works for a Path and a namespace MultiplexedPath
            if entry.name == "wxmp_sandbox.html":
                return Path(str(entry)).parent
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    source = Path(__file__).resolve().parent.parent / "templates"
    if (source / "wxmp_sandbox.html").is_file():
        return source
    raise RuntimeError("wxmp templates not found: reinstall wxmp (they ship as wxmp._templates)")
