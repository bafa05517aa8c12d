"""CHAP responses for every algorithm and encoding, computed independently of chap.py.

Expected values come from hashlib over ``CHAP_I byte || secret || challenge`` with the IANA
numbers (5 MD5, 6 SHA-1, 7 SHA-256, 8 SHA3-256; /work/shared/docs/iscsi-protocol.md §19), in
hex (``0x``) and base64 (``0b``), in both directions of mutual CHAP. tgt computes 7 as SHA-1
(tgt-and-libiscsi.md §5.1): we keep the standard SHA-256, so a tgt-style answer is refused.
Also: the mutual-CHAP target name check and the reflection guard (never send the target's
own challenge back as ours).
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from poolbackend.iscsi.chap import ChapInitiator
from poolbackend.iscsi.errors import AuthenticationFailed

#: IANA PPP authentication algorithm numbers -> hashlib constructor (not chap.ALGORITHMS)
EXPECTED = {5: hashlib.md5, 6: hashlib.sha1, 7: hashlib.sha256, 8: hashlib.sha3_256}
USER, SECRET = "inuser", b"insecret12345"
TUSER, TSECRET = "outuser", b"outsecret12345"


def _enc(raw: bytes, b64: bool) -> str:
    return "0b" + base64.b64encode(raw).decode() if b64 else "0x" + raw.hex()


def _dec(text: str) -> bytes:
    assert text[:2] in ("0x", "0b"), text
    return base64.b64decode(text[2:]) if text[:2] == "0b" else bytes.fromhex(text[2:])


def _expected(alg: int, ident: int, secret: bytes, challenge: bytes) -> bytes:
    return EXPECTED[alg](bytes([ident]) + secret + challenge).digest()


@pytest.mark.parametrize("b64", [False, True], ids=["hex", "base64"])
@pytest.mark.parametrize("alg", [5, 6, 7, 8], ids=["md5", "sha1", "sha256", "sha3_256"])
def test_response_and_target_check_per_algorithm(alg: int, b64: bool) -> None:
    chap = ChapInitiator(USER, SECRET, (alg, 5), TUSER, TSECRET)
    challenge = bytes((i * 29 + alg) & 0xFF for i in range(40))
    out = dict(chap.respond({"CHAP_A": str(alg), "CHAP_I": "201", "CHAP_C": _enc(challenge, b64)}))
    assert out["CHAP_N"] == USER
    assert out["CHAP_R"][:2] == ("0b" if b64 else "0x")  # answered in the target's encoding
    assert _dec(out["CHAP_R"]) == _expected(alg, 201, SECRET, challenge)
    assert len(_dec(out["CHAP_R"])) == EXPECTED[alg]().digest_size
    # Mutual: our challenge is at least as long as the hash; the target's right answer passes.
    mine, ident = _dec(out["CHAP_C"]), int(out["CHAP_I"])
    assert out["CHAP_C"][:2] == out["CHAP_R"][:2]
    assert len(mine) >= max(16, EXPECTED[alg]().digest_size)
    good = _expected(alg, ident, TSECRET, mine)
    chap.verify_target({"CHAP_N": TUSER, "CHAP_R": _enc(good, b64)})
    for other in EXPECTED:  # the same exchange hashed with any other algorithm is refused
        if other != alg:
            wrong = _expected(other, ident, TSECRET, mine)
            with pytest.raises(AuthenticationFailed, match="does not match the target secret"):
                chap.verify_target({"CHAP_N": TUSER, "CHAP_R": _enc(wrong, b64)})


@pytest.mark.parametrize("b64", [False, True], ids=["hex", "base64"])
def test_chap_a_7_is_sha256_not_tgts_sha1(b64: bool) -> None:
    """tgt's CHAP_A=7 is SHA-1; ours is SHA-256 (the standard), both ways."""
    chap = ChapInitiator(USER, SECRET, (7, 5), TUSER, TSECRET)
    challenge = bytes(range(50))
    out = dict(chap.respond({"CHAP_A": "7", "CHAP_I": "3", "CHAP_C": _enc(challenge, b64)}))
    got = _dec(out["CHAP_R"])
    assert got == hashlib.sha256(b"\x03" + SECRET + challenge).digest()
    assert got[:20] != hashlib.sha1(b"\x03" + SECRET + challenge).digest()
    tgt_style = hashlib.sha1(bytes([int(out["CHAP_I"])]) + TSECRET + _dec(out["CHAP_C"]))
    with pytest.raises(AuthenticationFailed, match="does not match"):
        chap.verify_target({"CHAP_N": TUSER, "CHAP_R": _enc(tgt_style.digest(), b64)})


def test_mutual_chap_checks_the_target_user_name() -> None:
    """A correct CHAP_R under another name is refused, naming both names."""
    chap = ChapInitiator(USER, SECRET, (5,), TUSER, TSECRET)
    out = dict(chap.respond({"CHAP_A": "5", "CHAP_I": "9", "CHAP_C": "0x" + "ab" * 16}))
    good = _expected(5, int(out["CHAP_I"]), TSECRET, _dec(out["CHAP_C"]))
    with pytest.raises(
        AuthenticationFailed, match="target answered as 'mallory', expected 'outuser'"
    ):
        chap.verify_target({"CHAP_N": "mallory", "CHAP_R": "0x" + good.hex()})
    chap.verify_target({"CHAP_N": TUSER, "CHAP_R": "0x" + good.hex()})  # and the right one


class _ReflectingSecrets:
    """A random source whose first challenge equals the target's (randomness is an input)."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.calls = 0

    def token_bytes(self, n: int) -> bytes:
        self.calls += 1
        return self.first if self.calls == 1 else bytes([0x5A]) * n


@pytest.mark.parametrize("b64", [False, True], ids=["hex", "base64"])
def test_reflection_guard_never_sends_the_targets_challenge(b64: bool) -> None:
    """The target's challenge equal to the one we drew: we must draw again, not send it."""
    theirs = bytes(range(100, 116))  # 16 bytes, the size we draw for MD5
    fake = _ReflectingSecrets(theirs)
    chap = ChapInitiator(USER, SECRET, (5,), TUSER, TSECRET, random_bytes=fake.token_bytes)
    out = dict(chap.respond({"CHAP_A": "5", "CHAP_I": "1", "CHAP_C": _enc(theirs, b64)}))
    assert fake.calls >= 2, "the reflected challenge was not noticed"
    assert _dec(out["CHAP_C"]) != theirs, "we reflected the target's challenge"
    assert _dec(out["CHAP_C"]) == bytes([0x5A]) * 16
