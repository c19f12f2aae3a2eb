"""Signatures and WeChat's AES message encryption: known answers, round trips, refusals."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wxmp.crypto import MessageCrypto, Verifier, check_signature, make_nonce, signature
from wxmp.errors import DecryptError, SignatureError
from wxmp.testing.clock import FakeClock

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"
VECTOR_MSG = b"<xml><Content><![CDATA[hi]]></Content></xml>"
VECTOR_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv2/TOBDxeuYC08L+jHetba3bUhd4zkj1htYczIMZs2XpXW668ChznsglIzTq9kyQc/"
    "qFDvb3osDe46DLilnjGWZgT2DKPoWRaktusbFuoDdCH"
)


def test_signature_known_answer() -> None:
    # wechat-api.md §2.1
    assert signature("AAAAA", "1714036504", "1514711492") == "f464b24fc39322e44b38aa78f5edd27bd1441696"


def test_check_signature() -> None:
    good = "f464b24fc39322e44b38aa78f5edd27bd1441696"
    assert check_signature(good, "AAAAA", "1714036504", "1514711492")
    assert check_signature(good.upper(), "AAAAA", "1714036504", "1514711492")
    assert not check_signature(good, "AAAAA", "1714036505", "1514711492")
    assert not check_signature("", "AAAAA", "1714036504", "1514711492")
    assert not check_signature(None, "AAAAA", "1714036504", "1514711492")


def test_aes_known_answer() -> None:
    # wechat-api.md §2.2 round-trip vector
    crypto = MessageCrypto(AES_KEY, APPID)
    assert crypto.encrypt(VECTOR_MSG, random=b"aaaabbbbccccdddd") == VECTOR_ENCRYPT
    assert crypto.decrypt(VECTOR_ENCRYPT) == VECTOR_MSG
    assert signature("testtoken", "1409304348", "xxxxxx", VECTOR_ENCRYPT) == (
        "bdc07d58b88ba17177b471eb3433065c564b6fad"
    )


@given(st.text())
def test_aes_round_trip(text: str) -> None:
    crypto = MessageCrypto(AES_KEY, APPID)
    data = text.encode("utf-8", "surrogatepass")
    assert crypto.decrypt(crypto.encrypt(data)) == data


def test_padding_fills_a_whole_block_when_aligned() -> None:
    crypto = MessageCrypto(AES_KEY, APPID)
    # 16 random + 4 length + msg + 18 appid = 64 bytes exactly with a 26-byte message.
    raw = base64.b64decode(crypto.encrypt(b"x" * 26))
    assert len(raw) == 96


def test_wrong_key_is_refused() -> None:
    other = MessageCrypto("B" * 43, APPID)
    with pytest.raises(DecryptError):
        other.decrypt(VECTOR_ENCRYPT)


def test_foreign_appid_is_refused() -> None:
    theirs = MessageCrypto(AES_KEY, "wx0000000000000000")
    with pytest.raises(DecryptError, match="appid"):
        MessageCrypto(AES_KEY, APPID).decrypt(theirs.encrypt(b"<xml/>"))


@pytest.mark.parametrize("value", ["not base64!", "", "AAAA", base64.b64encode(b"x" * 17).decode()])
def test_garbage_is_refused(value: str) -> None:
    with pytest.raises(DecryptError):
        MessageCrypto(AES_KEY, APPID).decrypt(value)


def test_bad_padding_is_refused() -> None:
    crypto = MessageCrypto(AES_KEY, APPID)
    raw = bytearray(base64.b64decode(VECTOR_ENCRYPT))
    raw[-1] ^= 0xFF  # corrupts the last plaintext block, padding included
    with pytest.raises(DecryptError):
        crypto.decrypt(base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize("key", ["short", "!" * 43])
def test_bad_aes_key(key: str) -> None:
    with pytest.raises(ValueError):
        MessageCrypto(key, APPID)


def test_key_not_in_repr() -> None:
    assert AES_KEY not in repr(MessageCrypto(AES_KEY, APPID))


def test_encrypt_reply_envelope_verifies() -> None:
    crypto = MessageCrypto(AES_KEY, APPID)
    env = crypto.encrypt_reply("<xml>r</xml>", "testtoken", "1409304348", "nonce1")
    from wxmp.messages import parse_fields

    fields = parse_fields(env)
    assert fields["TimeStamp"] == "1409304348" and fields["Nonce"] == "nonce1"
    assert check_signature(fields["MsgSignature"], "testtoken", "1409304348", "nonce1", fields["Encrypt"])
    assert crypto.decrypt(fields["Encrypt"]) == b"<xml>r</xml>"


def test_nonce_is_fresh() -> None:
    assert make_nonce() != make_nonce()


class TestVerifier:
    def test_accepts_within_window(self) -> None:
        clock = FakeClock(1714036504 + 299)
        Verifier("AAAAA", 300, clock).check(
            "f464b24fc39322e44b38aa78f5edd27bd1441696", "1714036504", "1514711492"
        )

    @pytest.mark.parametrize("offset", [301, -301, 86400])
    def test_refuses_outside_window(self, offset: int) -> None:
        clock = FakeClock(1714036504 + offset)
        with pytest.raises(SignatureError, match="window"):
            Verifier("AAAAA", 300, clock).check(
                "f464b24fc39322e44b38aa78f5edd27bd1441696", "1714036504", "1514711492"
            )

    def test_refuses_bad_signature_and_missing_parts(self) -> None:
        v = Verifier("AAAAA", 300, FakeClock(1714036504))
        with pytest.raises(SignatureError, match="bad signature"):
            v.check("0" * 40, "1714036504", "1514711492")
        with pytest.raises(SignatureError, match="missing"):
            v.check(None, "1714036504", "1514711492")
        with pytest.raises(SignatureError, match="integer"):
            v.check("0" * 40, "soon", "1514711492")

    def test_msg_signature(self) -> None:
        v = Verifier("testtoken", 300, FakeClock(1409304348))
        v.check("bdc07d58b88ba17177b471eb3433065c564b6fad", "1409304348", "xxxxxx", VECTOR_ENCRYPT)
        with pytest.raises(SignatureError, match="bad msg_signature"):
            v.check(
                "bdc07d58b88ba17177b471eb3433065c564b6fad", "1409304348", "xxxxxx", "X", name="msg_signature"
            )

    def test_error_text_holds_no_token(self) -> None:
        v = Verifier("SecretTok", 300, FakeClock(1))
        with pytest.raises(SignatureError) as info:
            v.check("0" * 40, "1", "2")
        assert "SecretTok" not in str(info.value)
