"""tgt 1.0.85's answers to our operational login offer, for Login Responses scripted in bytes."""

from __future__ import annotations

#: every operational key tgt answers, apart from the digests
TGT_OPERATIONAL_KEYS: tuple[tuple[str, str], ...] = (
    ("MaxConnections", "1"),
    ("InitialR2T", "Yes"),
    ("ImmediateData", "Yes"),
    ("MaxBurstLength", "262144"),
    ("FirstBurstLength", "65536"),
    ("DefaultTime2Wait", "2"),
    ("DefaultTime2Retain", "0"),
    ("MaxOutstandingR2T", "1"),
    ("DataPDUInOrder", "Yes"),
    ("DataSequenceInOrder", "Yes"),
    ("ErrorRecoveryLevel", "0"),
)


def tgt_login_keys(header_digest: str = "None", data_digest: str = "None") -> list[tuple[str, str]]:
    """tgt's operational answers with the given digests, in tgt's order."""
    return [("HeaderDigest", header_digest), ("DataDigest", data_digest), *TGT_OPERATIONAL_KEYS]
