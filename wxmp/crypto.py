"""Callback signatures and WeChat's AES message encryption (WeChat's 接入指南 and 消息加解密说明 pages,
developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html).

- :func:`signature` / :func:`check_signature`: ``sha1`` over the sorted parameters, compared in
  constant time. The same function computes ``msg_signature`` when given the ``Encrypt`` value.
- :class:`Verifier`: the signature plus a timestamp window, with an injectable clock.
- :class:`MessageCrypto`: AES-256-CBC over ``random16 | uint32_be(len) | xml | appid`` with PKCS#7
  padding to 32-byte blocks and IV = key[:16], as WeChat defines it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import DecryptError, SignatureError

__all__ = ["MessageCrypto", "Verifier", "check_signature", "make_nonce", "signature"]

_BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16 (§2.2)


def signature(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    """sha1 hex of the lexicographically sorted parameters joined without a separator.

    With ``token, timestamp, nonce`` it is the ``signature`` query parameter; adding the ``Encrypt``
    value gives the ``msg_signature`` of safe mode.
    """
    return hashlib.sha1("".join(sorted((token, timestamp, nonce, *extra))).encode()).hexdigest()


def check_signature(given: str | None, token: str, timestamp: str, nonce: str, *extra: str) -> bool:
    """True when ``given`` equals the expected signature (constant-time comparison)."""
    if not given:
        return False
    expected = signature(token, timestamp, nonce, *extra)
    return hmac.compare_digest(expected.encode(), given.lower().encode())


def make_nonce() -> str:
    """A random 16-character hex nonce for an encrypted reply."""
    return secrets.token_hex(8)


class Verifier:
    """Checks a callback's signature and that its timestamp is within ``window`` seconds of now.

    ``clock`` returns epoch seconds (``time.time`` by default); tests inject a fake one.
    Failures raise :class:`~wxmp.errors.SignatureError` with a short reason that holds no secret.
    """

    __slots__ = ("clock", "token", "window")

    def __init__(self, token: str, window: int = 300, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.window = window
        self.clock = clock

    def check(
        self, sig: str | None, timestamp: str | None, nonce: str | None, *extra: str, name: str = "signature"
    ) -> None:
        """Raise SignatureError unless ``sig`` signs ``timestamp, nonce, *extra`` and the time is fresh."""
        if not sig or not timestamp or nonce is None:
            raise SignatureError(f"missing {name}, timestamp or nonce")
        try:
            ts = int(timestamp)
        except ValueError:
            raise SignatureError("timestamp is not an integer") from None
        if abs(self.clock() - ts) > self.window:
            raise SignatureError("timestamp outside the accepted window")
        if not check_signature(sig, self.token, timestamp, nonce, *extra):
            raise SignatureError(f"bad {name}")


def _aes_key(encoding_aes_key: str) -> bytes:
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error:
        raise ValueError("EncodingAESKey is not valid base64") from None
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


class MessageCrypto:
    """Encrypts and decrypts callback bodies for one account (EncodingAESKey + appid).

    The key is never part of ``repr`` or of any error message.
    """

    __slots__ = ("_appid_bytes", "_cipher", "appid")

    def __init__(self, aes_key: str, appid: str) -> None:
        key = _aes_key(aes_key)
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
        self.appid = appid
        self._appid_bytes = appid.encode()

    def __repr__(self) -> str:
        return f"<MessageCrypto appid={self.appid!r}>"

    def encrypt(self, xml: bytes | str, random: bytes | None = None) -> str:
        """Base64 ``Encrypt`` value for ``xml``; ``random`` (16 bytes) is only for known-answer tests."""
        if isinstance(xml, str):
            xml = xml.encode()
        rnd = os.urandom(16) if random is None else random
        if len(rnd) != 16:
            raise ValueError("random must be 16 bytes")
        plain = b"".join((rnd, len(xml).to_bytes(4, "big"), xml, self._appid_bytes))
        pad = _BLOCK - len(plain) % _BLOCK
        plain += bytes((pad,)) * pad
        enc = self._cipher.encryptor()
        return base64.b64encode(enc.update(plain) + enc.finalize()).decode()

    def decrypt(self, encrypted: str | bytes) -> bytes:
        """The XML inside an ``Encrypt`` value; DecryptError for a wrong key, bad padding or foreign appid."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptError("Encrypt is not base64") from None
        if not data or len(data) % 16:
            raise DecryptError("Encrypt is not a whole number of AES blocks")
        dec = self._cipher.decryptor()
        plain = dec.update(data) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes((pad,)) * pad:
            raise DecryptError("bad padding (wrong EncodingAESKey?)")
        plain = plain[:-pad]
        if len(plain) < 20:
            raise DecryptError("decrypted body too short")
        size = int.from_bytes(plain[16:20], "big")
        if 20 + size > len(plain):
            raise DecryptError("bad length prefix (wrong EncodingAESKey?)")
        if not hmac.compare_digest(plain[20 + size :], self._appid_bytes):
            raise DecryptError("message is not for this appid")
        return plain[20 : 20 + size]

    def encrypt_reply(self, xml: bytes | str, token: str, timestamp: str, nonce: str) -> str:
        """The safe-mode reply envelope: Encrypt, MsgSignature, TimeStamp and Nonce (§2.2)."""
        encrypted = self.encrypt(xml)
        sig = signature(token, timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp>"
            f"<Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )

    def decrypt_reply(self, body: bytes, token: str) -> bytes:
        """The reply inside an envelope from :meth:`encrypt_reply`, its MsgSignature checked first
        (what WeChat does with a safe-mode answer): DecryptError when it does not verify."""
        from .messages import parse_fields

        env = parse_fields(body)
        encrypt, sig = str(env.get("Encrypt") or ""), str(env.get("MsgSignature") or "")
        timestamp, nonce = str(env.get("TimeStamp") or ""), str(env.get("Nonce") or "")
        if not check_signature(sig, token, timestamp, nonce, encrypt):
            raise DecryptError("the encrypted reply's MsgSignature does not verify")
        return self.decrypt(encrypt)


def is_envelope(body: bytes) -> bool:
    """True for an encrypted reply envelope (as :meth:`MessageCrypto.encrypt_reply` writes it)."""
    return body.startswith(b"<xml><Encrypt>")
