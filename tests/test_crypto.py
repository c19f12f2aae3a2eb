"""Signatures and WeChat's AES message encryption: known answers, round trips, refusals."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from wxmp.crypto import MessageCrypto, Verifier, check_signature, is_envelope, make_nonce, signature
from wxmp.errors import DecryptError, SignatureError
from wxmp.testing.clock import FakeClock

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx1234567890abcdef"
VECTOR_MSG = b"<xml><Content><![CDATA[hi]]></Content></xml>"
VECTOR_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv2/TOBDxeuYC08L+jHetba3bUhd4zkj1htYczIMZs2XpXW668ChznsglIzTq9kyQc/"
    "qFDvb3osDe46DLilnjGWZgT2DKPoWRaktusbFuoDdCH"
)


def exactly(message: str) -> str:
    """A ``match=`` pattern for this exact error text: proves which check refused."""
    return "^" + re.escape(message) + "$"


def seal(plain: bytes, aes_key: str = AES_KEY) -> str:
    """AES-256-CBC with IV = key[:16] over ``plain`` as given: no padding added, for hand-made bodies."""
    key = base64.b64decode(aes_key + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def body(xml: bytes, appid: bytes = APPID.encode(), size: int | None = None) -> bytes:
    """random16 | uint32_be(size) | xml | appid, unpadded."""
    return b"R" * 16 + (len(xml) if size is None else size).to_bytes(4, "big") + xml + appid


def pkcs7(plain: bytes) -> bytes:
    pad = 32 - len(plain) % 32
    return plain + bytes((pad,)) * pad


def test_signature_known_answer() -> None:
    # WeChat's 接入指南, developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html
    assert signature("AAAAA", "1714036504", "1514711492") == "f464b24fc39322e44b38aa78f5edd27bd1441696"


def test_check_signature() -> None:
    good = "f464b24fc39322e44b38aa78f5edd27bd1441696"
    assert check_signature(good, "AAAAA", "1714036504", "1514711492")
    assert check_signature(good.upper(), "AAAAA", "1714036504", "1514711492")
    assert not check_signature(good, "AAAAA", "1714036505", "1514711492")
    assert not check_signature("", "AAAAA", "1714036504", "1514711492")
    assert not check_signature(None, "AAAAA", "1714036504", "1514711492")


def test_aes_known_answer() -> None:
    # WeChat's 消息加解密说明 (message encryption) page round-trip vector
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
    assert crypto.decrypt(base64.b64encode(raw).decode()) == b"x" * 26


@pytest.mark.parametrize(("size", "pad"), [(25, 1), (26, 32), (27, 31), (10, 16)])
def test_every_padding_length_decrypts(size: int, pad: int) -> None:
    # 16 + 4 + size + 18 bytes of body; WeChat pads to 32 (§2.2), so a body one byte short of a
    # block gets exactly 1 byte of padding and an aligned one a whole block of 32.
    crypto = MessageCrypto(AES_KEY, APPID)
    msg = b"m" * size
    plain = pkcs7(body(msg))
    assert plain[-1] == pad and plain[-pad:] == bytes((pad,)) * pad
    assert crypto.encrypt(msg, random=b"R" * 16) == seal(plain)
    assert crypto.decrypt(seal(plain)) == msg


def test_wrong_key_is_refused() -> None:
    other = MessageCrypto("B" * 43, APPID)
    with pytest.raises(DecryptError, match="wrong EncodingAESKey"):
        other.decrypt(VECTOR_ENCRYPT)


def test_foreign_appid_is_refused() -> None:
    theirs = MessageCrypto(AES_KEY, "wx0000000000000000")
    with pytest.raises(DecryptError, match=exactly("message is not for this appid")):
        MessageCrypto(AES_KEY, APPID).decrypt(theirs.encrypt(b"<xml/>"))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not base64!", "Encrypt is not base64"),
        ("", "Encrypt is not a whole number of AES blocks"),
        ("AAAA", "Encrypt is not a whole number of AES blocks"),
        (base64.b64encode(b"x" * 17).decode(), "Encrypt is not a whole number of AES blocks"),
        # junk inside an otherwise valid value: refused, not silently skipped by the decoder
        (VECTOR_ENCRYPT[:20] + "!" + VECTOR_ENCRYPT[20:], "Encrypt is not base64"),
        (VECTOR_ENCRYPT[:20] + " " + VECTOR_ENCRYPT[20:], "Encrypt is not base64"),
        (VECTOR_ENCRYPT[:20] + "\n" + VECTOR_ENCRYPT[20:], "Encrypt is not base64"),
    ],
)
def test_garbage_is_refused(value: str, reason: str) -> None:
    with pytest.raises(DecryptError, match=exactly(reason)):
        MessageCrypto(AES_KEY, APPID).decrypt(value)


BAD_PADDING = "bad padding (wrong EncodingAESKey?)"


def test_bad_padding_is_refused() -> None:
    crypto = MessageCrypto(AES_KEY, APPID)
    raw = bytearray(base64.b64decode(VECTOR_ENCRYPT))
    raw[-1] ^= 0xFF  # corrupts the last plaintext block, padding included
    with pytest.raises(DecryptError, match=exactly(BAD_PADDING)):
        crypto.decrypt(base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize("last", [0, 33, 255])
def test_padding_byte_out_of_range_is_refused(last: int) -> None:
    plain = pkcs7(body(b"<xml/>"))
    with pytest.raises(DecryptError, match=exactly(BAD_PADDING)):
        MessageCrypto(AES_KEY, APPID).decrypt(seal(plain[:-1] + bytes((last,))))


def test_padding_with_a_wrong_byte_inside_is_refused() -> None:
    # The last byte says 5, one of the four before it disagrees; the appid check alone would not
    # notice (the refusal must come from the padding check).
    plain = body(b"x" * 21) + b"\x05\x05\x09\x05\x05"
    assert len(plain) % 32 == 0
    with pytest.raises(DecryptError, match=exactly(BAD_PADDING)):
        MessageCrypto(AES_KEY, APPID).decrypt(seal(plain))


def test_body_shorter_than_its_header_is_refused() -> None:
    crypto = MessageCrypto(AES_KEY, "")
    with pytest.raises(DecryptError, match=exactly("decrypted body too short")):
        crypto.decrypt(seal(pkcs7(b"R" * 16 + b"\0\0\0")))
    # exactly the 20-byte header with an empty message is long enough: for an empty appid it is valid
    assert crypto.decrypt(seal(pkcs7(body(b"", appid=b"")))) == b""


BAD_LENGTH = "bad length prefix (wrong EncodingAESKey?)"


@pytest.mark.parametrize("size", [6 + 18 + 1, 6 + 18 + 40, 2**24 + 6, 2**32 - 1])
def test_length_prefix_beyond_the_body_is_refused(size: int) -> None:
    with pytest.raises(DecryptError, match=exactly(BAD_LENGTH)):
        MessageCrypto(AES_KEY, APPID).decrypt(seal(pkcs7(body(b"<xml/>", size=size))))


def test_length_prefix_covering_the_appid_leaves_no_appid() -> None:
    # size reaches exactly the end of the body: the length is plausible, the appid is missing
    with pytest.raises(DecryptError, match=exactly("message is not for this appid")):
        MessageCrypto(AES_KEY, APPID).decrypt(seal(pkcs7(body(b"<xml/>", size=6 + 18))))


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("short", "EncodingAESKey must be 43 characters"),
        ("A" * 44, "EncodingAESKey must be 43 characters"),
        ("!" * 43, "EncodingAESKey is not valid base64"),
        # 43 characters, but "=" already among them: 31 bytes
        ("A" * 42 + "=", "EncodingAESKey must decode to 32 bytes"),
    ],
)
def test_bad_aes_key(key: str, reason: str) -> None:
    with pytest.raises(ValueError, match=exactly(reason)):
        MessageCrypto(key, APPID)


def test_random_must_be_16_bytes() -> None:
    with pytest.raises(ValueError, match=exactly("random must be 16 bytes")):
        MessageCrypto(AES_KEY, APPID).encrypt(b"<xml/>", random=b"r" * 15)


def test_key_not_in_repr() -> None:
    assert repr(MessageCrypto(AES_KEY, APPID)) == f"<MessageCrypto appid={APPID!r}>"
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
    nonce = make_nonce()
    assert re.fullmatch(r"[0-9a-f]{16}", nonce)
    assert nonce != make_nonce()


class TestVerifier:
    @pytest.mark.parametrize("offset", [300, -300, 0])
    def test_accepts_within_window(self, offset: int) -> None:
        # the default window is 300 s each way, both ends included
        clock = FakeClock(1714036504 + offset)
        verifier = Verifier("AAAAA", clock=clock)
        assert verifier.window == 300
        assert verifier.check("f464b24fc39322e44b38aa78f5edd27bd1441696", "1714036504", "1514711492") is None

    @pytest.mark.parametrize("offset", [301, -301, 86400])
    def test_refuses_outside_window(self, offset: int) -> None:
        clock = FakeClock(1714036504 + offset)
        with pytest.raises(SignatureError, match=exactly("timestamp outside the accepted window")):
            Verifier("AAAAA", clock=clock).check(
                "f464b24fc39322e44b38aa78f5edd27bd1441696", "1714036504", "1514711492"
            )

    def test_refuses_bad_signature_and_missing_parts(self) -> None:
        v = Verifier("AAAAA", 300, FakeClock(1714036504))
        with pytest.raises(SignatureError, match=exactly("bad signature")):
            v.check("0" * 40, "1714036504", "1514711492")
        good = "f464b24fc39322e44b38aa78f5edd27bd1441696"
        for sig, timestamp, nonce in [
            (None, "1714036504", "1514711492"),
            (good, "", "1514711492"),
            (good, "1714036504", None),
        ]:
            with pytest.raises(SignatureError, match=exactly("missing signature, timestamp or nonce")):
                v.check(sig, timestamp, nonce)
        with pytest.raises(SignatureError, match=exactly("timestamp is not an integer")):
            v.check("0" * 40, "soon", "1514711492")

    def test_msg_signature(self) -> None:
        v = Verifier("testtoken", 300, FakeClock(1409304348))
        v.check("bdc07d58b88ba17177b471eb3433065c564b6fad", "1409304348", "xxxxxx", VECTOR_ENCRYPT)
        with pytest.raises(SignatureError, match=exactly("bad msg_signature")):
            v.check(
                "bdc07d58b88ba17177b471eb3433065c564b6fad", "1409304348", "xxxxxx", "X", name="msg_signature"
            )

    def test_error_text_holds_no_token(self) -> None:
        v = Verifier("SecretTok", 300, FakeClock(1))
        with pytest.raises(SignatureError) as info:
            v.check("0" * 40, "1", "2")
        assert "SecretTok" not in str(info.value)


def test_a_reply_envelope_opens_only_with_its_signature():
    crypto = MessageCrypto("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx0000000000000001")
    envelope = crypto.encrypt_reply("<xml>hi</xml>", "tok123", "1700000000", "n1").encode()
    assert is_envelope(envelope) and not is_envelope(b"<xml><ToUserName>")
    assert crypto.decrypt_reply(envelope, "tok123") == b"<xml>hi</xml>"
    with pytest.raises(DecryptError, match=r"^the encrypted reply's MsgSignature does not verify$"):
        crypto.decrypt_reply(envelope, "othertoken")
    tampered = envelope.replace(b"<Nonce><![CDATA[n1]]>", b"<Nonce><![CDATA[n2]]>")
    with pytest.raises(DecryptError, match="MsgSignature does not verify"):
        crypto.decrypt_reply(tampered, "tok123")
