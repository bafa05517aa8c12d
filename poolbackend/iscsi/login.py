"""Login phase as a pure state machine (RFC 7143 §6.3, §11.12-11.13).

Security stage with CHAP when credentials are configured, then the operational stage with
as many round trips as the target asks for (tgt answers T=0 whenever it declares a
non-default key). No I/O: :meth:`LoginMachine.start` and :meth:`LoginMachine.receive`
return PDUs to send and finally a :class:`LoginSuccess` or :class:`LoginRedirect`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.chap import ChapInitiator
from poolbackend.iscsi.errors import (
    AuthenticationFailed,
    LocalProtocolError,
    LoginFailed,
    RemoteProtocolError,
)
from poolbackend.iscsi.options import SessionOptions
from poolbackend.iscsi.textkeys import (
    KEYS,
    Kind,
    answer_target_offer,
    decode_pairs,
    encode_pairs,
    negotiate_answer,
    parse_bool,
    parse_number,
)
from poolbackend.text import printable

SECURITY, OPERATIONAL, FULL_FEATURE = 0, 1, 3
MAX_LOGIN_PDUS = 32

LOGIN_STATUS: dict[int, str] = {
    0x0101: "target moved temporarily",
    0x0102: "target moved permanently",
    0x0200: "initiator error (the target refused the login request)",
    0x0201: "authentication failed",
    0x0202: "authorization failure (initiator not allowed)",
    0x0203: "target not found",
    0x0204: "target removed",
    0x0205: "unsupported iSCSI version",
    0x0206: "too many connections",
    0x0207: "missing parameter",
    0x0208: "cannot include connection in session",
    0x0209: "session type not supported",
    0x020A: "session does not exist",
    0x020B: "invalid request during login",
    0x0300: "target error",
    0x0301: "service unavailable",
    0x0302: "out of resources",
}


def login_status_text(cls: int, detail: int) -> str:
    code = cls << 8 | detail
    text = LOGIN_STATUS.get(code)
    if text is None:
        kind = {1: "redirection", 2: "initiator error", 3: "target error"}.get(cls, "unknown")
        text = f"{kind} status"
    return f"{text} (status 0x{code:04x})"


@dataclass
class LoginConfig:
    """One login: the session's :class:`~.options.SessionOptions` as the user set them, and
    what the session core picks for this connection (target, ISID, TSIH, CID, the CHAP
    responder). The offered values are read from ``options``, never copied."""

    options: SessionOptions
    target_name: str | None  # None for a discovery session
    isid: bytes = b"\x80\x00\x00\x00\x00\x01"
    tsih: int = 0
    cid: int = 0
    chap: ChapInitiator | None = None
    initial_r2t: bool = False
    immediate_data: bool = True
    default_time2wait: int = 2
    default_time2retain: int = 0

    @property
    def discovery(self) -> bool:
        return self.target_name is None

    def operational_offer(self) -> list[tuple[str, str]]:
        """The operational keys offered, from ``options``; a discovery session offers no
        digests (``None``) whatever the options say."""
        o = self.options
        yn = {True: "Yes", False: "No"}
        if self.discovery:
            return [
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", str(o.max_recv_data_segment_length)),
            ]
        return [
            ("HeaderDigest", o.header_digest),
            ("DataDigest", o.data_digest),
            ("MaxRecvDataSegmentLength", str(o.max_recv_data_segment_length)),
            ("MaxConnections", "1"),
            ("InitialR2T", yn[self.initial_r2t]),
            ("ImmediateData", yn[self.immediate_data]),
            ("MaxBurstLength", str(o.max_burst_length)),
            ("FirstBurstLength", str(min(o.first_burst_length, o.max_burst_length))),
            ("DefaultTime2Wait", str(self.default_time2wait)),
            ("DefaultTime2Retain", str(self.default_time2retain)),
            ("MaxOutstandingR2T", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("ErrorRecoveryLevel", "0"),
        ]


@dataclass
class SessionParams:
    """The negotiated result of a login; defaults are RFC 7143's."""

    header_digest: bool = False
    data_digest: bool = False
    max_recv_data_segment_length: int = 8192  # what the target may send us
    max_xmit_data_segment_length: int = 8192  # what we may send (the target's MRDSL)
    max_burst_length: int = 262144
    first_burst_length: int = 65536
    initial_r2t: bool = True
    immediate_data: bool = True
    max_outstanding_r2t: int = 1
    default_time2wait: int = 2
    default_time2retain: int = 20
    error_recovery_level: int = 0
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    target_portal_group_tag: int | None = None
    target_alias: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def apply(self, key: str, value: str) -> None:
        if key == "HeaderDigest":
            self.header_digest = value == "CRC32C"
        elif key == "DataDigest":
            self.data_digest = value == "CRC32C"
        elif key == "MaxRecvDataSegmentLength":
            self.max_xmit_data_segment_length = parse_number(key, value)
        elif key == "TargetPortalGroupTag":
            self.target_portal_group_tag = parse_number(key, value)
        elif key == "TargetAlias":
            self.target_alias = value
        elif key in _NUMERIC_FIELDS:
            setattr(self, _NUMERIC_FIELDS[key], parse_number(key, value))
        elif key in _BOOL_FIELDS:
            setattr(self, _BOOL_FIELDS[key], parse_bool(key, value))
        else:
            self.extra[key] = value


_NUMERIC_FIELDS = {
    "MaxBurstLength": "max_burst_length",
    "FirstBurstLength": "first_burst_length",
    "MaxOutstandingR2T": "max_outstanding_r2t",
    "DefaultTime2Wait": "default_time2wait",
    "DefaultTime2Retain": "default_time2retain",
    "ErrorRecoveryLevel": "error_recovery_level",
}
_BOOL_FIELDS = {
    "InitialR2T": "initial_r2t",
    "ImmediateData": "immediate_data",
    "DataPDUInOrder": "data_pdu_in_order",
    "DataSequenceInOrder": "data_sequence_in_order",
}


@dataclass(frozen=True)
class LoginSuccess:
    params: SessionParams
    tsih: int
    stat_sn: int
    exp_cmd_sn: int
    max_cmd_sn: int


@dataclass(frozen=True)
class LoginStep:
    """The content of our next Login Request; the connection frames it (ISID, CID, ITT and
    its own CmdSN and ExpStatSN): the machine keeps no sequence numbers."""

    flags: int
    tsih: int
    pairs: list[tuple[str, str]]


def encode_login_request(
    config: LoginConfig, step: LoginStep, cmd_sn: int, exp_stat_sn: int
) -> bytes:
    """The Login Request PDU for ``step``, framed with the caller's sequence numbers."""
    bhs = P.new_bhs(P.Op.LOGIN_REQ, step.flags, immediate=True)
    bhs[8:14] = config.isid
    P.put16(bhs, 14, step.tsih)
    P.put32(bhs, 16, LoginMachine.ITT)
    P.put16(bhs, 20, config.cid)
    P.put32(bhs, 24, cmd_sn)
    P.put32(bhs, 28, exp_stat_sn)
    return b"".join(bytes(b) for b in P.encode(bhs, encode_pairs(step.pairs)))


@dataclass(frozen=True)
class LoginRedirect:
    address: str  # host[:port][,tpgt] as the target sent it
    permanent: bool


class LoginMachine:
    """Drives one connection's login. Feed each Login Response PDU to :meth:`receive`."""

    ITT = 0

    def __init__(self, config: LoginConfig) -> None:
        self.config = config
        self.params = SessionParams()
        self.params.max_recv_data_segment_length = config.options.max_recv_data_segment_length
        self._stage = SECURITY if config.chap else OPERATIONAL
        self._chap_step = 0  # 0 AuthMethod sent, 1 CHAP_A sent, 2 CHAP_R sent
        self._offered: dict[str, str] = {}
        self._answered: set[str] = set()
        self._pending_answers: list[tuple[str, str]] = []
        self._count = 0
        self._started = False
        self._done = False
        self._tsih = config.tsih

    # -- building requests -------------------------------------------------------------
    def _request(
        self, csg: int, nsg: int, transit: bool, pairs: list[tuple[str, str]]
    ) -> LoginStep:
        self._count += 1
        if self._count > MAX_LOGIN_PDUS:
            raise RemoteProtocolError(
                f"login did not finish after {MAX_LOGIN_PDUS} round trips; the target keeps "
                "answering T=0"
            )
        flags = (P.F_TRANSIT if transit else 0) | csg << 2 | (nsg if transit else 0)
        return LoginStep(flags, self._tsih, pairs)

    def _leading_keys(self) -> list[tuple[str, str]]:
        keys = [("InitiatorName", self.config.options.initiator_name)]
        if self.config.discovery:
            keys.append(("SessionType", "Discovery"))
        else:
            assert self.config.target_name is not None
            keys += [("TargetName", self.config.target_name), ("SessionType", "Normal")]
        return keys

    def _operational_request(self, first: bool) -> LoginStep:
        pairs = list(self._pending_answers)
        self._pending_answers.clear()
        if first:
            offer = self.config.operational_offer()
            for k, v in offer:
                self._offered[k] = v
            pairs += offer
        return self._request(OPERATIONAL, FULL_FEATURE, True, pairs)

    def start(self) -> LoginStep:
        if self._started:
            raise LocalProtocolError("login already started")
        self._started = True
        if self._stage == SECURITY:
            return self._request(
                SECURITY, OPERATIONAL, True, [*self._leading_keys(), ("AuthMethod", "CHAP,None")]
            )
        offer = self.config.operational_offer()
        self._offered.update(offer)
        return self._request(OPERATIONAL, FULL_FEATURE, True, self._leading_keys() + offer)

    # -- processing responses ----------------------------------------------------------
    def receive(self, pdu: P.PDU) -> LoginStep | LoginSuccess | LoginRedirect:
        if not self._started or self._done:
            raise LocalProtocolError("no login in progress")
        if pdu.opcode != P.Op.LOGIN_RSP:
            raise RemoteProtocolError(f"expected a Login Response, got {pdu.name()}")
        bhs = pdu.bhs
        status_class, status_detail = bhs[36], bhs[37]
        if status_class == 1:
            keys = dict(decode_pairs(pdu.data, "login response"))
            addr = keys.get("TargetAddress")
            if not addr:
                raise RemoteProtocolError("target redirected the login without a TargetAddress")
            self._done = True
            return LoginRedirect(addr, permanent=status_detail == 2)
        if status_class != 0:
            self._done = True
            text = login_status_text(status_class, status_detail)
            if self.config.chap is not None and self._chap_step >= 2:  # after our CHAP_R
                text += self.config.chap.refusal_hint()
            exc = AuthenticationFailed if (status_class, status_detail) == (2, 1) else LoginFailed
            raise exc(f"login failed: {text}", status_class, status_detail)
        if bhs[3] != 0:
            raise RemoteProtocolError(f"target chose unsupported iSCSI version {bhs[3]}")
        if pdu.itt != self.ITT:
            raise RemoteProtocolError("Login Response carries a wrong Initiator Task Tag")
        if pdu.flags & P.F_CONTINUE:
            raise RemoteProtocolError("target sent a continued (C=1) Login Response; unsupported")
        stat_sn = pdu.field32(24)
        self._tsih = P.u16(bhs, 14)
        transit = bool(pdu.flags & P.F_TRANSIT)
        csg = (pdu.flags >> 2) & 3
        nsg = pdu.flags & 3
        if csg != self._stage:
            raise RemoteProtocolError(f"Login Response is for stage {csg}, we are in {self._stage}")
        pairs = decode_pairs(pdu.data, "login response")
        keys = dict(pairs)
        if self._stage == SECURITY:
            return self._security(keys, transit, nsg)
        self._absorb_operational(pairs)
        if transit:
            if nsg != FULL_FEATURE:
                raise RemoteProtocolError(f"target moved to unexpected login stage {nsg}")
            self._finish_operational()
            self._done = True
            return LoginSuccess(self.params, self._tsih, stat_sn, pdu.field32(28), pdu.field32(32))
        return self._operational_request(first=False)

    def _security(self, keys: dict[str, str], transit: bool, nsg: int) -> LoginStep:
        chap = self.config.chap
        assert chap is not None
        for k in ("TargetPortalGroupTag", "TargetAlias"):
            if k in keys:
                self.params.apply(k, keys[k])
        if self._chap_step == 0:
            method = keys.get("AuthMethod")
            if method == "None" or (method is None and transit):
                if not transit:
                    return self._request(SECURITY, OPERATIONAL, True, [])
                return self._enter_operational(nsg)
            if method != "CHAP":
                raise RemoteProtocolError(
                    f"target chose AuthMethod={printable(str(method))}, we offered CHAP,None"
                )
            self._chap_step = 1
            return self._request(SECURITY, OPERATIONAL, False, chap.offer())
        if self._chap_step == 1:
            self._chap_step = 2
            return self._request(SECURITY, OPERATIONAL, True, chap.respond(keys))
        # After CHAP_R: the target accepted us (status 0); check it in mutual CHAP.
        if self._chap_step == 2:
            chap.verify_target(keys)
            self._chap_step = 3
        if not transit:
            return self._request(SECURITY, OPERATIONAL, True, [])
        return self._enter_operational(nsg)

    def _enter_operational(self, nsg: int) -> LoginStep:
        if nsg == FULL_FEATURE:
            raise RemoteProtocolError("target skipped operational negotiation; unsupported")
        self._stage = OPERATIONAL
        return self._operational_request(first=True)

    def _absorb_operational(self, pairs: list[tuple[str, str]]) -> None:
        for key, value in pairs:
            if key in self._offered:
                if key in self._answered:
                    continue  # a repeated answer on a later T=0 round trip
                self._answered.add(key)
                result = negotiate_answer(key, self._offered[key], value)
                self.params.apply(key, result)
            elif KEYS.get(key) is not None and KEYS[key].kind is Kind.DECLARATIVE:
                self.params.apply(key, value)
            elif value not in ("NotUnderstood", "Irrelevant", "Reject"):
                reply = answer_target_offer(key, value, self._offered)
                if reply is not None:
                    self._pending_answers.append((key, reply))
                    if reply not in ("NotUnderstood", "Irrelevant", "Reject"):
                        self.params.apply(key, reply)

    def _finish_operational(self) -> None:
        for key, offered in self._offered.items():
            spec = KEYS.get(key)
            if key in self._answered or spec is None:
                continue
            # Unanswered keys keep RFC defaults, except the two results fixed by our offer.
            if (spec.kind is Kind.AND and offered == "No") or (
                spec.kind is Kind.OR and offered == "Yes"
            ):
                self.params.apply(key, offered)
        p = self.params
        if p.first_burst_length > p.max_burst_length:
            p.first_burst_length = p.max_burst_length
