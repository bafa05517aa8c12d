"""iSCSI suites that libiscsi's upstream iscsi-test-cu has beyond the Debian build here, under
the same names: SendTargets in a session, NOP-Out pings and the CHAP algorithm negotiation
(RFC 7143 §11.10-§11.11, §11.18-§11.19, Appendix C; RFC 7143 §12.1.3 for CHAP)."""

from __future__ import annotations

from poolbackend.conformance.context import Context
from poolbackend.conformance.raw import RawClosed, RawConnection
from poolbackend.conformance.registry import TestFailed, TestSkipped, register
from poolbackend.iscsi import pdu as P
from poolbackend.iscsi.errors import (
    ConnectionFailed,
    ISCSIError,
    LoginFailed,
    RemoteProtocolError,
)

F = "iSCSI"


def _pairs(data: bytes) -> list[tuple[str, str]]:
    out = []
    for item in data.split(b"\0"):
        if item:
            key, _, value = item.decode("utf-8", "replace").partition("=")
            out.append((key, value))
    return out


def _login(ctx: Context, *, discovery: bool = False) -> RawConnection:
    try:
        return RawConnection.login(ctx.url, ctx.initiator, ctx.options.timeout, discovery=discovery)
    except (OSError, RawClosed, ISCSIError) as exc:
        raise TestFailed(f"login failed: {exc}") from None


def _send_targets(conn: RawConnection, ctx: Context, value: bytes) -> list[tuple[str, str]]:
    text = value.rstrip(b"\0").decode(errors="replace")
    try:
        pdu = conn.text(value, ctx.options.timeout)
    except TimeoutError:
        raise TestFailed(f"no answer to the Text request {text}") from None
    except RawClosed as exc:
        raise TestFailed(
            f"the target dropped the connection on the Text request {text} ({exc})"
        ) from None
    if pdu.opcode != P.Op.TEXT_RSP:
        raise TestFailed(f"the Text request {text} was answered with {pdu.name()}")
    return _pairs(bytes(pdu.data))


def sendtargets_simple(ctx: Context) -> None:
    assert ctx.url.target is not None
    conn = _login(ctx)
    try:
        for value in (b"SendTargets=\0", f"SendTargets={ctx.url.target}\0".encode()):
            pairs = _send_targets(conn, ctx, value)
            names = [v for k, v in pairs if k == "TargetName"]
            if names != [ctx.url.target]:
                raise TestFailed(
                    f"{value.decode()!r} in a normal session listed {names}, "
                    f"expected only the session's target {ctx.url.target}"
                )
    finally:
        conn.close()
    conn = _login(ctx, discovery=True)
    try:
        pairs = _send_targets(conn, ctx, b"SendTargets=All\0")
        if ctx.url.target not in [v for k, v in pairs if k == "TargetName"]:
            raise TestFailed("SendTargets=All in a discovery session does not list the target")
    finally:
        conn.close()


def sendtargets_invalid(ctx: Context) -> None:
    conn = _login(ctx, discovery=True)
    try:
        for bad in (
            b"SendTargetsPlease=All\0",
            b"SendTargets=Alle\0",
            b"SendTargets=A\0",
            b"sENDtARGETS=aLL\0",
        ):
            try:
                pdu = conn.text(bad, ctx.options.timeout)
            except TimeoutError:
                raise TestFailed(f"no answer to the Text request {bad[:-1].decode()!r}") from None
            except RawClosed:
                raise TestFailed(
                    f"the target dropped the connection on the Text request "
                    f"{bad[:-1].decode()!r}; it must answer (NotUnderstood, "
                    "Reject or an empty response)"
                ) from None
            if pdu.opcode == P.Op.TEXT_RSP:
                names = [v for k, v in _pairs(bytes(pdu.data)) if k == "TargetName"]
                if names:
                    raise TestFailed(
                        f"the invalid Text request {bad[:-1].decode()!r} was "
                        f"answered with a target list ({names[0]}, ...)"
                    )
        pairs = _send_targets(conn, ctx, b"SendTargets=All\0")
        if not any(k == "TargetName" for k, _ in pairs):
            raise TestFailed("a valid SendTargets=All after the invalid ones listed no target")
    finally:
        conn.close()


def nop_simple(ctx: Context) -> None:
    conn = _login(ctx)
    try:
        sizes = sorted({0, 1, 3, 4, 255, 512, 4096, min(conn.max_xmit, 65536)})
        for n in (s for s in sizes if s <= conn.max_xmit):
            payload = bytes((i * 7 + 1) & 0xFF for i in range(n))
            try:
                pdu = conn.nop(payload, ctx.options.timeout)
            except (TimeoutError, RawClosed) as exc:
                raise TestFailed(f"NOP-Out ping with {n} bytes: {exc or 'no answer'}") from None
            if pdu.opcode != P.Op.NOP_IN:
                raise TestFailed(f"NOP-Out ping with {n} bytes answered with {pdu.name()}")
            if pdu.ttt != P.NO_TAG:
                raise TestFailed("the NOP-In answering a ping has a Target Transfer Tag")
            if bytes(pdu.data) != payload:
                raise TestFailed(f"the NOP-In did not echo the {n} bytes of ping data")
    finally:
        conn.close()


def _need_chap(ctx: Context) -> None:
    if ctx.url.credentials is None:
        raise TestSkipped("needs a URL with CHAP credentials (iscsi://user%password@...)")


def chap_simple(ctx: Context) -> None:
    _need_chap(ctx)
    try:
        conn = RawConnection.login(
            ctx.url, ctx.initiator, ctx.options.timeout, chap_algorithms=(5,)
        )
    except (OSError, RawClosed, ISCSIError) as exc:
        raise TestFailed(f"CHAP login offering CHAP_A=5 (MD5) failed: {exc}") from None
    conn.close()


def chap_invalid(ctx: Context) -> None:
    _need_chap(ctx)
    try:
        conn = RawConnection.login(
            ctx.url, ctx.initiator, ctx.options.timeout, chap_algorithms=(56,)
        )
    except (LoginFailed, RawClosed, ConnectionFailed):
        return  # refused (login status, CHAP_A=Reject, or the connection closed): right
    except RemoteProtocolError as exc:
        if "did not offer" not in str(exc):
            return  # no challenge came (CHAP_A=Reject): refused, right
        raise TestFailed(f"offered only CHAP_A=56, the target went on regardless: {exc}") from None
    conn.close()
    raise TestFailed("a CHAP login offering only the undefined algorithm CHAP_A=56 succeeded")


def chap_hex_name(ctx: Context) -> None:
    _need_chap(ctx)
    assert ctx.url.credentials is not None
    if not ctx.url.credentials.username.lower().startswith("0x"):
        raise TestSkipped("needs a CHAP user name starting with 0x")
    chap_simple(ctx)


_ST = "RFC 7143 §11.10-§11.11 (Text), Appendix C (SendTargets)"
register(
    F,
    "iSCSISendTargets",
    "Simple",
    sendtargets_simple,
    "A target must support SendTargets in normal (operational) sessions too: there "
    "SendTargets= (empty) and SendTargets=<the session's target> list exactly that target; "
    "in a discovery session SendTargets=All lists it."
    f"\n\nStandard: {_ST}.",
)
register(
    F,
    "iSCSISendTargets",
    "Invalid",
    sendtargets_invalid,
    "Misspelt keys and values (SendTargetsPlease=All, SendTargets=Alle, SendTargets=A, "
    "keys in the wrong case) are answered without a target list and without dropping "
    "the connection; a valid SendTargets=All then still works."
    f"\n\nStandard: {_ST}, §6.2 (NotUnderstood/Reject).",
)
register(
    F,
    "iSCSINop",
    "Simple",
    nop_simple,
    "A NOP-Out ping (ITT set, TTT FFFFFFFFh) with 0 bytes up to MaxRecvDataSegmentLength "
    "of data is answered by a NOP-In with the same data and TTT FFFFFFFFh."
    "\n\nStandard: RFC 7143 §11.18, §11.19.",
)
register(
    F,
    "iSCSICHAP",
    "Simple",
    chap_simple,
    "A CHAP login offering CHAP_A=5 (MD5, which every target must support) succeeds."
    "\n\nStandard: RFC 7143 §12.1.3.",
)
register(
    F,
    "iSCSICHAP",
    "Invalid",
    chap_invalid,
    "A CHAP login offering only an undefined algorithm (CHAP_A=56) must be refused."
    "\n\nStandard: RFC 7143 §12.1.3, RFC 1994.",
)
register(
    F,
    "iSCSICHAP",
    "HexName",
    chap_hex_name,
    "A CHAP user name that starts with 0x is a plain name, not a hex number: the login "
    "with it succeeds.\n\nStandard: RFC 7143 §12.1.3 (CHAP_N is text).",
)
