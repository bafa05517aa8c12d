"""Text key=value encoding and the operational key negotiation rules (RFC 7143 §6, §13).

Each key has a result function; :func:`negotiate_answer` computes what an initiator must
conclude from (our offer, the target's answer), and :func:`answer_target_offer` answers keys
the *target* proposes that we did not offer. Values are checked so a target cannot push a
length outside the RFC range.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from poolbackend.iscsi.errors import RemoteProtocolError
from poolbackend.numbers import ascii_int
from poolbackend.text import printable

Pairs = list[tuple[str, str]]


def encode_pairs(pairs: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in pairs)


def decode_pairs(data: bytes | bytearray | memoryview, what: str = "text") -> Pairs:
    """Split a NUL-separated key=value segment; a missing final NUL is tolerated."""
    out: Pairs = []
    for raw in bytes(data).split(b"\0"):
        if not raw:
            continue
        try:
            item = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RemoteProtocolError(f"{what}: key=value data is not UTF-8") from exc
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RemoteProtocolError(f"{what}: malformed key=value item '{printable(item, 60)}'")
        out.append((key, value))
    return out


class Kind(enum.Enum):
    LIST = "list"
    MIN = "min"
    MAX = "max"
    AND = "and"
    OR = "or"
    DECLARATIVE = "declarative"


@dataclass(frozen=True)
class KeySpec:
    kind: Kind
    low: int = 0
    high: int = 0


_LEN = (512, 0xFFFFFF)
KEYS: dict[str, KeySpec] = {
    "HeaderDigest": KeySpec(Kind.LIST),
    "DataDigest": KeySpec(Kind.LIST),
    "AuthMethod": KeySpec(Kind.LIST),
    "MaxConnections": KeySpec(Kind.MIN, 1, 65535),
    "InitialR2T": KeySpec(Kind.OR),
    "ImmediateData": KeySpec(Kind.AND),
    "MaxRecvDataSegmentLength": KeySpec(Kind.DECLARATIVE, *_LEN),
    "MaxBurstLength": KeySpec(Kind.MIN, *_LEN),
    "FirstBurstLength": KeySpec(Kind.MIN, *_LEN),
    "DefaultTime2Wait": KeySpec(Kind.MAX, 0, 3600),
    "DefaultTime2Retain": KeySpec(Kind.MIN, 0, 3600),
    "MaxOutstandingR2T": KeySpec(Kind.MIN, 1, 65535),
    "DataPDUInOrder": KeySpec(Kind.OR),
    "DataSequenceInOrder": KeySpec(Kind.OR),
    "ErrorRecoveryLevel": KeySpec(Kind.MIN, 0, 2),
    "TargetPortalGroupTag": KeySpec(Kind.DECLARATIVE, 0, 65535),
    "TargetAlias": KeySpec(Kind.DECLARATIVE),
    "TargetAddress": KeySpec(Kind.DECLARATIVE),
    "TargetName": KeySpec(Kind.DECLARATIVE),
    "SessionType": KeySpec(Kind.DECLARATIVE),
    "InitiatorName": KeySpec(Kind.DECLARATIVE),
    "InitiatorAlias": KeySpec(Kind.DECLARATIVE),
    "TaskReporting": KeySpec(Kind.LIST),
}
SPECIAL = frozenset({"NotUnderstood", "Irrelevant", "Reject"})


def parse_number(key: str, value: str) -> int:
    try:
        n = ascii_int(value, allow_hex=True)
    except ValueError as exc:
        raise RemoteProtocolError(f"target sent non-numeric {key}='{printable(value)}'") from exc
    spec = KEYS.get(key)
    if spec and spec.high and not spec.low <= n <= spec.high:
        raise RemoteProtocolError(
            f"target sent {key}={n}, outside the allowed range {spec.low}..{spec.high}"
        )
    return n


def parse_bool(key: str, value: str) -> bool:
    if value == "Yes":
        return True
    if value == "No":
        return False
    raise RemoteProtocolError(f"target sent {key}='{printable(value)}', expected Yes or No")


def negotiate_answer(key: str, offered: str, answer: str | None) -> str:
    """The negotiated value of a key we offered, given the target's answer (None = omitted)."""
    spec = KEYS.get(key)
    if spec is None or spec.kind is Kind.DECLARATIVE:
        return answer if answer is not None else offered
    if answer is None:
        # Only AND with No and OR with Yes may be left unanswered (result already fixed).
        if (spec.kind is Kind.AND and offered == "No") or (
            spec.kind is Kind.OR and offered == "Yes"
        ):
            return offered
        return _missing(key)
    if answer in ("NotUnderstood", "Irrelevant"):
        return offered if answer == "Irrelevant" else _missing(key)
    if answer == "Reject":
        raise RemoteProtocolError(f"target rejected our offer {key}={offered}")
    if spec.kind is Kind.LIST:
        choices = offered.split(",")
        if answer not in choices:
            raise RemoteProtocolError(
                f"target answered {key}={printable(answer)}, which is not one of our offer "
                f"{offered}"
            )
        return answer
    if spec.kind in (Kind.AND, Kind.OR):
        ours, theirs = parse_bool(key, offered), parse_bool(key, answer)
        expect = (ours and theirs) if spec.kind is Kind.AND else (ours or theirs)
        if theirs != expect:
            raise RemoteProtocolError(
                f"target answered {key}={printable(answer)} to our {offered}, violating the "
                f"{spec.kind.value.upper()} result function"
            )
        return answer
    ours_n, theirs_n = parse_number(key, offered), parse_number(key, answer)
    if spec.kind is Kind.MIN and theirs_n > ours_n:
        raise RemoteProtocolError(f"target answered {key}={theirs_n}, above our offer {ours_n}")
    if spec.kind is Kind.MAX and theirs_n < ours_n:
        raise RemoteProtocolError(f"target answered {key}={theirs_n}, below our offer {ours_n}")
    return str(theirs_n)


def _missing(key: str) -> str:
    raise RemoteProtocolError(f"target did not answer the key {key}")


def answer_target_offer(key: str, value: str, ours: dict[str, str]) -> str | None:
    """Our reply to a key the target proposed first (None: declarative, nothing to send)."""
    spec = KEYS.get(key)
    if spec is None:
        return "NotUnderstood"
    if spec.kind is Kind.DECLARATIVE:
        return None
    mine = ours.get(key)
    if mine is None:
        return "Irrelevant" if key in ("FirstBurstLength",) else "Reject"
    if spec.kind is Kind.LIST:
        mine_set = mine.split(",")
        for choice in value.split(","):
            if choice in mine_set:
                return choice
        return "Reject"
    if spec.kind is Kind.AND:
        return "Yes" if parse_bool(key, value) and parse_bool(key, mine) else "No"
    if spec.kind is Kind.OR:
        return "Yes" if parse_bool(key, value) or parse_bool(key, mine) else "No"
    theirs_n, mine_n = parse_number(key, value), parse_number(key, mine)
    return str(min(theirs_n, mine_n) if spec.kind is Kind.MIN else max(theirs_n, mine_n))
