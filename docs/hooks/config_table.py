"""MkDocs hook: renders the configuration table from the settings' single source.

A page that contains ``<!-- wxmp:config-table -->`` gets, in its place, one row per key of
``wxmp.config.DEFAULTS`` (key, default, meaning): the English meaning comes from
``wxmp.config.DOCS``, the Chinese one from :data:`ZH` below. A key missing from either mapping fails
the build, so a new setting cannot ship undocumented.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wxmp.config import APP_KEYS, DEFAULTS, DOCS  # noqa: E402

MARKER = "<!-- wxmp:config-table -->"

#: The Chinese meaning of each key (the English one is ``wxmp.config.DOCS``).
ZH: dict[str, str] = {
    "WXMP_APPID": "公众号的 AppID（`wx` 加 16 个字符）。",
    "WXMP_SECRET": "AppSecret（开发者密码）。不配置时回调照常工作，但本进程不获取 access_token，也"
    "不启动刷新线程。",
    "WXMP_TOKEN": "服务器配置里的令牌（Token，3 到 32 个字母或数字），用来校验微信推送的签名；启用"
    "回调必须配置。",
    "WXMP_AES_KEY": "43 位的消息加解密密钥（EncodingAESKey），开启兼容模式和安全模式（同时需要 `WXM"
    "P_APPID`）。",
    "WXMP_API_BASE": "接口请求发往的地址；测试时指向 `FakeWeChat`。",
    "WXMP_CACHE": 'access_token、刷新锁和去重标记存放的位置：一个 cachelib 缓存对象，或 `"filesystem:路径"`、'
    '`"redis://..."`、`"memcached://主机:端口[,主机:端口]"`、`"simple"`（仅单进程）。'
    "不设置时使用实例目录下的文件缓存，同一台机器上的进程共享。",
    "WXMP_CALLBACK_PATH": "微信推送消息的路径。",
    "WXMP_STABLE_TOKEN": "`True`：使用 `POST /cgi-bin/stable_token`；`False`：使用传统的 `GET /cgi-bin/token`。",
    "WXMP_REFRESHER": '`"thread"`（配置了 secret 时的默认值）：每个进程一个刷新线程；`"external"`：从不自己获取，'
    "只读取 `flask wxmp refresher` 写进缓存的 token；`False`：只在用到时获取。",
    "WXMP_REFRESH_MARGIN": "提前刷新的时间占有效期的比例（2 小时的 token 提前 144 秒）。",
    "WXMP_TIMEOUT": "请求微信接口的 HTTP 超时，单位秒。",
    "WXMP_EXTERNAL_WAIT": "external 模式下，进程等待中控刷新器写入 token 的秒数。",
    "WXMP_TIMESTAMP_WINDOW": "签名时间戳允许的偏差（秒，前后都算），超出即拒绝。",
    "WXMP_MAX_BODY": "回调请求体的上限（字节），超过返回 413。",
    "WXMP_DEDUP": "在共享缓存上对微信的重试去重。",
    "WXMP_DEDUP_TTL": "去重时记住消息 ID 及其回复的秒数。",
    "WXMP_SANDBOX": "本地沙盒聊天页。不设置时，仅在没有 secret 且应用处于 debug 或 testing 时开启。",
    "WXMP_STATUS": "`/wxmp/status` 状态页。",
    "WXMP_STATUS_CHECK": "一个返回 `True` 才放行的函数，用来保护状态页；不设置时只允许本机直连访问。",
    "WXMP_STATUS_SECRET": "打开状态页用的 Bearer 密钥（至少 16 个字符，请求头 `Authorization: Bearer ...`）；"
    "非调试/测试环境下，状态页必须配置它或 `WXMP_STATUS_CHECK`。",
    "WXMP_ALLOW_PLAINTEXT": "配置了 AES 密钥时仍接受明文推送（仅用于从明文模式迁移期间，启动时会记录警告）。"
    "关闭时这类推送一律拒绝。",
    "WXMP_PUBLIC_URL": "网站对外的根地址（如 `https://example.com`），生成网页授权回调地址时使用，而不是请求里的 Host 头。",
    "WXMP_SLOW_STRATEGY": "慢处理函数（`@wx.on(..., slow=True)`）赶不上微信 5 秒期限时怎么办：`auto`（能调用客服接口就用客服消息，否则靠重试）、`customer_service` 或 `retries`。",
    "WXMP_SLOW_HOLDING_TEXT": "`retries` 策略下，微信最后一次推送到来时结果还没好，就回复这段文字；结果留给用户的下一条消息。",
    "WXMP_SLOW_KEYWORD": "只有发送这段文字才取回留存的结果（None：用户下一条任意消息都会取回）。",
    "WXMP_SLOW_WECHAT_TIMEOUT": "微信每次推送等待回复的时间（5 秒；测试里可以设短一些）。",
    "WXMP_SLOW_MARGIN": "在微信期限前这么多秒内结果已就绪，就作为被动回复返回。",
    "WXMP_SLOW_ATTEMPTS": "微信对一条消息预计推送的次数（3）。",
    "WXMP_SLOW_LEASE": "慢任务认领的租期（秒），不续期就失效：worker 被杀后任务可以重新执行。",
    "WXMP_SLOW_RESULT_TTL": "慢任务结果（以及留给下一条消息的结果）在共享缓存里保存多久。",
    "WXMP_SLOW_WORKERS": "每个进程内默认线程池运行慢处理函数的线程数。",
    "WXMP_SESSION_TTL": "会话（`msg.session`）自最后一次修改起保存的秒数。",
    "WXMP_ACCOUNTS": '更多公众号：`{"shop": {"appid": ..., "token": ...}}`。每个账号有自己的回调路径'
    "（默认 `/wechat/<名称>`）、处理函数和按 appid 隔开的 token，并继承其他非凭据配置。",
}

_HEADERS = {
    "en": ("key", "default", "meaning"),
    "zh": ("配置项", "默认值", "说明"),
}
_UNSET = {"en": "unset", "zh": "未设置"}


def _default(value: Any, lang: str) -> str:
    if value is None:
        return _UNSET[lang]
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(lang: str) -> str:
    """The Markdown table of every ``WXMP_*`` key for ``lang`` ("en" or "zh")."""
    meanings = DOCS if lang == "en" else ZH
    keys = {**DEFAULTS, **dict.fromkeys(APP_KEYS)}
    missing = set(keys) ^ set(meanings)
    if missing:
        raise ValueError(f"configuration docs ({lang}) out of step with DEFAULTS: {sorted(missing)}")
    key, default, meaning = _HEADERS[lang]
    rows = [f"| {key} | {default} | {meaning} |", "|---|---|---|"]
    for name, value in keys.items():
        rows.append(f"| `{name}` | {_default(value, lang)} | {_cell(meanings[name])} |")
    return "\n".join(rows)


def page_language(src_path: str) -> str:
    """ "zh" or "en" from a page's path under docs/ (``zh/configuration.md``)."""
    first = PurePosixPath(src_path.replace("\\", "/")).parts[0]
    return "en" if first == "en" else "zh"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render_table(page_language(page.file.src_path)))
