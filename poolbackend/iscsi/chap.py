"""CHAP for the iSCSI security stage (RFC 7143 §12.1.3, RFC 1994).

Response = H(identifier byte || secret || challenge) with H chosen by CHAP_A: 5 MD5,
6 SHA-1, 7 SHA-256, 8 SHA3-256 (IANA numbers). tgt is non-standard and computes 7 as SHA-1,
which is why the algorithm list is configurable and defaults to MD5 only.

This module holds the one table of CHAP_A values (:data:`ALGORITHMS`, :data:`DISPLAY_NAMES`,
:data:`ALGORITHM_NAMES`); the pool definition, its XML and its explanations read it. The hash
and random modules are imported where they are used, so that reading the table (every pool
command loads the pool model) costs no OpenSSL start-up.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from poolbackend.iscsi.errors import AuthenticationFailed, RemoteProtocolError
from poolbackend.numbers import ascii_int, is_ascii_uint

MD5, SHA1, SHA256, SHA3_256 = 5, 6, 7, 8
"""The CHAP_A values (IANA's numbers)."""

ALGORITHMS: dict[int, str] = {MD5: "md5", SHA1: "sha1", SHA256: "sha256", SHA3_256: "sha3_256"}
"""hashlib's name of each CHAP_A value's hash."""
DISPLAY_NAMES: dict[int, str] = {MD5: "MD5", SHA1: "SHA-1", SHA256: "SHA-256", SHA3_256: "SHA3-256"}
ALGORITHM_NAMES: dict[str, int] = {
    "md5": MD5,
    "sha1": SHA1,
    "sha-1": SHA1,
    "sha256": SHA256,
    "sha-256": SHA256,
    "sha3-256": SHA3_256,
    "sha3_256": SHA3_256,
}
MAX_BINARY = 1024


def parse_algorithms(text: str) -> tuple[int, ...]:
    """'5', '7,5', 'sha-256,md5' -> CHAP_A numbers (MD5 is always appended: RFC 7143 needs it)."""
    out: list[int] = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        num = ALGORITHM_NAMES.get(item)
        if num is None and is_ascii_uint(item) and int(item) in ALGORITHMS:
            num = int(item)
        if num is None:
            raise ValueError(f"unknown CHAP algorithm {item!r} (use md5, sha1, sha-256, sha3-256)")
        if num not in out:
            out.append(num)
    if MD5 not in out:
        out.append(MD5)
    return tuple(out)


def digest(algorithm: int, ident: int, secret: bytes, challenge: bytes) -> bytes:
    import hashlib

    h = hashlib.new(ALGORITHMS[algorithm])
    h.update(bytes([ident & 0xFF]))
    h.update(secret)
    h.update(challenge)
    return h.digest()


def decode_binary(key: str, value: str) -> bytes:
    """Decode a large-binary value in hex (0x...) or base64 (0b...) form."""
    try:
        if value[:2] in ("0x", "0X"):
            hexpart = value[2:]
            if len(hexpart) % 2:
                hexpart = "0" + hexpart
            raw = binascii.unhexlify(hexpart)
        elif value[:2] in ("0b", "0B"):
            raw = base64.b64decode(value[2:], validate=True)
        else:
            raise ValueError("no 0x/0b prefix")
    except (ValueError, binascii.Error) as exc:
        raise RemoteProtocolError(f"target sent a malformed {key} value") from exc
    if not raw or len(raw) > MAX_BINARY:
        raise RemoteProtocolError(f"target sent a {key} of {len(raw)} bytes (allowed 1..1024)")
    return raw


def encode_binary(raw: bytes, use_base64: bool = False) -> str:
    return "0b" + base64.b64encode(raw).decode() if use_base64 else "0x" + raw.hex()


class ChapInitiator:
    """One CHAP exchange: answers the target's challenge and, for mutual CHAP, checks the target."""

    def __init__(
        self,
        username: str,
        secret: bytes,
        algorithms: tuple[int, ...] = (MD5,),
        target_username: str | None = None,
        target_secret: bytes | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
    ) -> None:
        """``random_bytes(n)`` is the source of our mutual-CHAP challenge and identifier
        (an input, so tests can fix it); without it, the system's CSPRNG (``secrets``)."""
        self.username = username
        self._random_bytes = random_bytes
        self._secret = secret
        self.algorithms = algorithms
        self.target_username = target_username
        self._target_secret = target_secret
        self._algorithm = MD5
        self._my_ident = 0
        self._my_challenge = b""
        self._their_challenge = b""
        self._use_base64 = False

    @property
    def chosen(self) -> int:
        """The CHAP_A the target chose (5 until it has chosen)."""
        return self._algorithm

    def refusal_hint(self) -> str:
        """What to add to a login refusal that came after our CHAP response: the algorithm we
        answered with, and, when it was not MD5, the way out (tgt computes CHAP_A=7 as SHA-1
        and refuses a SHA-256 answer with status 0x0200)."""
        alg = self._algorithm
        text = f"; CHAP_A={alg} ({DISPLAY_NAMES[alg]}) was used"
        if alg != MD5:
            text += (
                ", which some targets (tgt) compute differently: offer MD5 only "
                "(<pb:chap algorithms='5'/> in the pool XML, auth=md5 in a URL)"
            )
        return text

    def __repr__(self) -> str:  # never show secrets
        return f"ChapInitiator(username={self.username!r}, algorithms={self.algorithms})"

    @property
    def mutual(self) -> bool:
        return self._target_secret is not None

    def offer(self) -> list[tuple[str, str]]:
        return [("CHAP_A", ",".join(str(a) for a in self.algorithms))]

    def respond(self, keys: dict[str, str]) -> list[tuple[str, str]]:
        """Answer the target's CHAP_A/CHAP_I/CHAP_C with CHAP_N/CHAP_R (+ our challenge)."""
        try:
            alg = ascii_int(keys["CHAP_A"])
            ident = ascii_int(keys["CHAP_I"], allow_hex=True)
            chal_text = keys["CHAP_C"]
        except KeyError as exc:
            raise RemoteProtocolError(f"target's CHAP challenge lacks {exc.args[0]}") from exc
        except ValueError as exc:
            raise RemoteProtocolError("target sent a non-numeric CHAP_A or CHAP_I") from exc
        if alg not in self.algorithms:
            raise RemoteProtocolError(
                f"target chose CHAP_A={alg}, which we did not offer ({self.algorithms})"
            )
        if not 0 <= ident <= 255:
            raise RemoteProtocolError(f"target sent CHAP_I={ident}, outside 0..255")
        self._algorithm = alg
        self._use_base64 = chal_text[:2] in ("0b", "0B")
        challenge = decode_binary("CHAP_C", chal_text)
        self._their_challenge = challenge
        answer = digest(alg, ident, self._secret, challenge)
        out = [("CHAP_N", self.username), ("CHAP_R", encode_binary(answer, self._use_base64))]
        if self.mutual:
            import hashlib
            import secrets

            size = max(16, hashlib.new(ALGORITHMS[alg]).digest_size)
            rand = self._random_bytes
            while True:
                self._my_challenge = rand(size) if rand else secrets.token_bytes(size)
                if self._my_challenge != challenge:  # never reflect the target's challenge
                    break
            self._my_ident = rand(1)[0] if rand else secrets.randbelow(256)
            out += [
                ("CHAP_I", str(self._my_ident)),
                ("CHAP_C", encode_binary(self._my_challenge, self._use_base64)),
            ]
        return out

    def verify_target(self, keys: dict[str, str]) -> None:
        """Check the target's CHAP_N/CHAP_R in mutual CHAP; raise on any mismatch."""
        if not self.mutual:
            return
        name, resp = keys.get("CHAP_N"), keys.get("CHAP_R")
        if name is None or resp is None:
            raise AuthenticationFailed(
                "mutual CHAP failed: the target did not authenticate itself (no CHAP_N/CHAP_R)",
                2,
                1,
            )
        if self.target_username is not None and name != self.target_username:
            raise AuthenticationFailed(
                f"mutual CHAP failed: target answered as {name!r}, "
                f"expected {self.target_username!r}",
                2,
                1,
            )
        import hmac

        assert self._target_secret is not None
        got = decode_binary("CHAP_R", resp)
        expect = digest(self._algorithm, self._my_ident, self._target_secret, self._my_challenge)
        if not hmac.compare_digest(got, expect):
            raise AuthenticationFailed(
                "mutual CHAP failed: the target's CHAP_R does not match the target secret", 2, 1
            )
