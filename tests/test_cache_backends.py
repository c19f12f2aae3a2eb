"""The shared cache's backends (wxmp.cache): filesystem, Redis, memcached, cachelib and in-process.

Each backend on its real store (files in a temporary folder, a private redis-server and memcached on
free ports), judged by what another process or a second store object would see.
"""

from __future__ import annotations
