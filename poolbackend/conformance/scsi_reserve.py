"""Reservation suites: RESERVE(6)/RELEASE(6) (SPC-2 §7.21-7.22) and PERSISTENT RESERVE
IN/OUT (SPC-4 §5.7, §6.13-§6.14), most of them over two I_T nexuses (the second URL or the
second initiator name). Every test removes the registrations it made."""

from __future__ import annotations

import time
from collections.abc import Callable

from poolbackend.conformance.context import INVALID_FIELD_IN_CDB, Context, Nexus
from poolbackend.conformance.registry import TestFailed, TestSkipped, register
from poolbackend.scsi import cdb_ext as X
from poolbackend.scsi.cdb_ext import ProutAction as A
from poolbackend.scsi.cdb_ext import PrType as T
from poolbackend.scsi.sense import SenseKey
from poolbackend.scsi.status import ScsiStatus

S = "SCSI"
KEY_A = 0xA1A2A3A4A5A6A7A8
KEY_B = 0xB1B2B3B4B5B6B7B8
CONFLICT = ScsiStatus.RESERVATION_CONFLICT


# -- RESERVE(6) --------------------------------------------------------------------------
def _reserve6(ctx: Context, nexus: Nexus) -> None:
    r = ctx.cmd(X.reserve6(), nexus=nexus)
    ctx.skip_if_unimplemented(r)
    if not r.good:
        raise TestFailed(f"RESERVE(6) from {nexus.initiator} returned {r.describe()}")


def reserve6_simple(ctx: Context) -> None:
    ctx.require_sbc()
    _reserve6(ctx, ctx.main)
    _reserve6(ctx, ctx.main)  # a second RESERVE from the holder is not a conflict
    ctx.good(X.release6(), why=" by the holder")
    ctx.good(X.release6(), why=" without a reservation (not an error)")


def reserve6_two(ctx: Context) -> None:
    ctx.require_sbc()
    a, b = ctx.main, ctx.second()
    _reserve6(ctx, a)
    try:
        ctx.status(X.reserve6(), CONFLICT, nexus=b, why=" from the other initiator")
        ctx.status(
            X.mode_sense6(0x3F, alloc=255),
            CONFLICT,
            nexus=b,
            read_len=255,
            why=" from the other initiator",
        )
        ctx.status(
            X.lba_cdb(X.Op.READ_10, 0, 1, size=10),
            CONFLICT,
            nexus=b,
            read_len=ctx.block_size,
            why=" from the other initiator",
        )
        ctx.good(
            X.inquiry(alloc=255),
            read_len=255,
            nexus=b,
            why=" from the other initiator (INQUIRY is allowed)",
        )
        ctx.good(X.release6(), nexus=b, why=" from a non-holder (ignored, GOOD)")
        ctx.status(X.reserve6(), CONFLICT, nexus=b, why=" after the non-holder's RELEASE")
    finally:
        ctx.cmd(X.release6(), nexus=a)
    _reserve6(ctx, b)
    ctx.good(X.release6(), nexus=b)


def _reserve6_nexus_loss(ctx: Context) -> None:
    """RESERVE(6) on a raw connection that is then dropped without a logout."""
    other = ctx.second()
    conn = ctx.nexus_to_lose()
    try:
        status = ctx.raw_status(conn, X.reserve6())
        if status == ScsiStatus.CHECK_CONDITION:
            raise TestSkipped("RESERVE(6) is not available on this LU")
        if status != ScsiStatus.GOOD:
            raise TestFailed(f"RESERVE(6) returned status {status:02X}h")
        ctx.status(X.reserve6(), CONFLICT, nexus=other, why=" while the first holds it")
    finally:
        conn.close()  # TCP closed, no Logout: the I_T nexus is lost
    deadline = time.monotonic() + ctx.options.timeout
    while True:  # the target notices the closed connection asynchronously
        r = ctx.cmd(X.reserve6(), nexus=other)
        if r.good or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not r.good:
        raise TestFailed(
            f"RESERVE(6) from the other initiator after the first one's connection was "
            f"dropped returned {r.describe()}: an I_T nexus loss must release the reservation"
        )
    ctx.good(X.release6(), nexus=other)


def _reserve6_cleared(how: str) -> Callable[[Context], None]:
    def test(ctx: Context) -> None:
        ctx.require_sbc()
        if how == "nexus loss":
            _reserve6_nexus_loss(ctx)
            return
        holder = ctx.open_nexus(ctx.initiator)
        ctx.extra.append(holder)
        other = ctx.second()
        _reserve6(ctx, holder)
        ctx.status(X.reserve6(), CONFLICT, nexus=other, why=" while the first holds it")
        if how == "logout":
            holder.close()
        else:
            fn = {"LUN reset": 5, "warm reset": 6, "cold reset": 7}[how]
            response = holder.tmf(fn)
            if response != 0:
                ctx.cmd(X.release6(), nexus=holder)
                raise TestSkipped(f"the target refused the {how} (TMF response {response})")
        r = ctx.cmd(X.reserve6(), nexus=other)
        if not r.good:
            if not holder.closed:
                ctx.cmd(X.release6(), nexus=holder)
            raise TestFailed(
                f"RESERVE(6) from the other initiator after the {how} returned "
                f"{r.describe()}: the reservation must have been released"
            )
        ctx.good(X.release6(), nexus=other)

    return test


register(
    S,
    "Reserve6",
    "Simple",
    reserve6_simple,
    "RESERVE(6) twice from the same nexus and RELEASE(6), also without a reservation, "
    "complete GOOD.\n\nStandard: SPC-2 §7.21, §7.22.",
)
register(
    S,
    "Reserve6",
    "2Initiators",
    reserve6_two,
    "While one initiator holds a RESERVE(6) reservation, another gets RESERVATION "
    "CONFLICT for RESERVE, MODE SENSE and READ but not for INQUIRY; its RELEASE is "
    "ignored; after the holder's RELEASE it can reserve.\n\nStandard: SPC-2 §5.5.1 "
    "(table 10), §7.21, §7.22.",
)
for _name, _how, _clause in (
    ("Logout", "logout", "SPC-2 §5.5.1, RFC 7143 §4.4.3 (logout ends the I_T nexus)"),
    ("ITNexusLoss", "nexus loss", "SPC-2 §5.5.1 (I_T nexus loss releases the reservation)"),
    ("TargetColdReset", "cold reset", "SAM-5 §6.3.1, RFC 7143 §11.5.1 TARGET COLD RESET"),
    ("TargetWarmReset", "warm reset", "SAM-5 §6.3.1, RFC 7143 §11.5.1 TARGET WARM RESET"),
    ("LUNReset", "LUN reset", "SAM-5 §6.3.1, §7.9 LOGICAL UNIT RESET"),
):
    register(
        S,
        "Reserve6",
        _name,
        _reserve6_cleared(_how),
        f"A RESERVE(6) reservation must be released by a {_how}: afterwards the other "
        f"initiator can reserve.\n\nStandard: {_clause}.",
    )


# -- PERSISTENT RESERVE ------------------------------------------------------------------
def prin(ctx: Context, sa: int, nexus: Nexus | None = None, alloc: int = 8192) -> bytes:
    r = ctx.cmd(X.persistent_reserve_in(sa, alloc), read_len=alloc, nexus=nexus)
    ctx.skip_if_unimplemented(r)
    if not r.good:
        raise TestFailed(f"PERSISTENT RESERVE IN service action {sa} returned {r.describe()}")
    return r.data


def read_keys(ctx: Context, nexus: Nexus | None = None) -> list[int]:
    data = prin(ctx, 0, nexus)
    n = int.from_bytes(data[4:8], "big") if len(data) >= 8 else 0
    return [int.from_bytes(data[8 + i : 16 + i], "big") for i in range(0, min(n, len(data) - 8), 8)]


def read_reservation(ctx: Context, nexus: Nexus | None = None) -> tuple[int, int] | None:
    """(key, type) of the persistent reservation, None when there is none."""
    data = prin(ctx, 1, nexus)
    if len(data) < 8 or int.from_bytes(data[4:8], "big") < 16 or len(data) < 24:
        return None
    return int.from_bytes(data[8:16], "big"), data[21] & 0x0F


def prout(
    ctx: Context,
    sa: int,
    key: int,
    sa_key: int = 0,
    pr_type: int = 0,
    nexus: Nexus | None = None,
    expect: int = ScsiStatus.GOOD,
) -> None:
    cdb = X.persistent_reserve_out(sa, pr_type)
    r = ctx.cmd(cdb, data=X.prout_parameters(key, sa_key), nexus=nexus)
    ctx.skip_if_unimplemented(r)
    if r.status != expect:
        raise TestFailed(
            f"PERSISTENT RESERVE OUT {A(sa).name.replace('_', ' ')} (type {pr_type}) returned "
            f"{r.describe()}, expected {ScsiStatus(expect).name.replace('_', ' ')}"
        )


def register_key(ctx: Context, key: int, nexus: Nexus | None = None) -> None:
    prout(ctx, A.REGISTER_AND_IGNORE, 0, key, nexus=nexus)


def cleanup(ctx: Context, nexus: Nexus, key: int) -> None:
    """Remove every registration and reservation (CLEAR from a registered nexus)."""
    ctx.cmd(
        X.persistent_reserve_out(A.REGISTER_AND_IGNORE),
        data=X.prout_parameters(0, key),
        nexus=nexus,
    )
    ctx.cmd(X.persistent_reserve_out(A.CLEAR), data=X.prout_parameters(key, 0), nexus=nexus)


def prin_read_keys_simple(ctx: Context) -> None:
    prin(ctx, 0)
    register_key(ctx, KEY_A)
    try:
        if KEY_A not in read_keys(ctx):
            raise TestFailed("READ KEYS does not list the key just registered")
    finally:
        cleanup(ctx, ctx.main, KEY_A)
    if KEY_A in read_keys(ctx):
        raise TestFailed("READ KEYS still lists the key after it was unregistered")


def prin_read_keys_truncate(ctx: Context) -> None:
    register_key(ctx, KEY_A)
    try:
        data = prin(ctx, 0, alloc=12)
        if len(data) > 12:
            raise TestFailed(f"READ KEYS with allocation length 12 returned {len(data)} bytes")
        if len(data) >= 8 and int.from_bytes(data[4:8], "big") < 8:
            raise TestFailed("a truncated READ KEYS must still report the full ADDITIONAL LENGTH")
    finally:
        cleanup(ctx, ctx.main, KEY_A)


def prin_sa_range(ctx: Context) -> None:
    for sa in range(4):
        prin(ctx, sa)
    for sa in range(4, 32):
        ctx.check(
            X.persistent_reserve_in(sa, 8192),
            SenseKey.ILLEGAL_REQUEST,
            INVALID_FIELD_IN_CDB,
            read_len=8192,
            why=f" service action {sa}",
        )


def prin_caps(ctx: Context) -> None:
    data = prin(ctx, 2)
    if len(data) < 8 or int.from_bytes(data[0:2], "big") != 8:
        raise TestFailed(f"REPORT CAPABILITIES LENGTH is not 8 ({data[:2].hex()})")
    if data[3] & 0x80 and not int.from_bytes(data[4:6], "big") & 0xEA1F:
        raise TestFailed("TMV=1 but the PERSISTENT RESERVATION TYPE MASK has no known type")


def prout_register_simple(ctx: Context) -> None:
    register_key(ctx, KEY_A)
    try:
        if KEY_A not in read_keys(ctx):
            raise TestFailed("the registered key is not listed by READ KEYS")
        prout(ctx, A.REGISTER, KEY_B, KEY_A, expect=CONFLICT)
        prout(ctx, A.REGISTER, KEY_A, 0)
        if KEY_A in read_keys(ctx):
            raise TestFailed("REGISTER with SERVICE ACTION RESERVATION KEY 0 did not unregister")
    finally:
        cleanup(ctx, ctx.main, KEY_A)


_TYPES = {
    "EA": T.EXCLUSIVE_ACCESS,
    "WE": T.WRITE_EXCLUSIVE,
    "EARO": T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
    "WERO": T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
    "EAAR": T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
    "WEAR": T.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
}


def prout_reserve_simple(ctx: Context) -> None:
    register_key(ctx, KEY_A)
    try:
        for name, t in _TYPES.items():
            prout(ctx, A.RESERVE, KEY_A, pr_type=t)
            res = read_reservation(ctx)
            if res is None or res[1] != t:
                raise TestFailed(f"READ RESERVATION after a {name} reservation shows {res}")
            if (
                t not in (T.WRITE_EXCLUSIVE_ALL_REGISTRANTS, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
                and res[0] != KEY_A
            ):
                raise TestFailed(f"READ RESERVATION shows key {res[0]:X}, expected {KEY_A:X}")
            prout(ctx, A.RELEASE, KEY_A, pr_type=t)
            if read_reservation(ctx) is not None:
                raise TestFailed(f"the {name} reservation is still there after RELEASE")
    finally:
        cleanup(ctx, ctx.main, KEY_A)


def _access(kind: str) -> Callable[[Context], None]:
    t = _TYPES[kind]
    reads_blocked = kind.startswith("EA")
    registrants_ok = kind.endswith(("RO", "AR"))

    def test(ctx: Context) -> None:
        ctx.require_sbc()
        ctx.require_dataloss()
        a, b = ctx.main, ctx.second()
        register_key(ctx, KEY_A, a)
        try:
            prout(ctx, A.RESERVE, KEY_A, pr_type=t, nexus=a)
            for registered in (False, True):
                if registered:
                    register_key(ctx, KEY_B, b)
                ok = registered and registrants_ok
                who = "a registered" if registered else "an unregistered"
                rd = ctx.cmd(
                    X.lba_cdb(X.Op.READ_10, 0, 1, size=10), read_len=ctx.block_size, nexus=b
                )
                want_read = ScsiStatus.GOOD if ok or not reads_blocked else CONFLICT
                if rd.status != want_read:
                    raise TestFailed(
                        f"READ(10) from {who} non-holder under a {kind} reservation "
                        f"returned {rd.describe()}, expected "
                        f"{ScsiStatus(want_read).name.replace('_', ' ')}"
                    )
                wr = ctx.cmd(
                    X.lba_cdb(X.Op.WRITE_10, 0, 1, size=10), data=ctx.read(0, 1, a), nexus=b
                )
                want_write = ScsiStatus.GOOD if ok else CONFLICT
                if wr.status != want_write:
                    raise TestFailed(
                        f"WRITE(10) from {who} non-holder under a {kind} "
                        f"reservation returned {wr.describe()}, expected "
                        f"{ScsiStatus(want_write).name.replace('_', ' ')}"
                    )
        finally:
            cleanup(ctx, a, KEY_A)
            ctx.cmd(
                X.persistent_reserve_out(A.REGISTER_AND_IGNORE),
                data=X.prout_parameters(0, 0),
                nexus=b,
            )

    return test


def _ownership(kind: str) -> Callable[[Context], None]:
    t = _TYPES[kind]
    all_registrants = kind.endswith("AR")

    def test(ctx: Context) -> None:
        ctx.require_sbc()
        a, b = ctx.main, ctx.second()
        register_key(ctx, KEY_A, a)
        register_key(ctx, KEY_B, b)
        try:
            prout(ctx, A.RESERVE, KEY_A, pr_type=t, nexus=a)
            prout(ctx, A.REGISTER, KEY_A, 0, nexus=a)  # the holder unregisters
            res = read_reservation(ctx, b)
            if all_registrants and res is None:
                raise TestFailed(
                    f"the {kind} reservation vanished when one of two registrants "
                    "unregistered; all-registrants reservations stay"
                )
            if not all_registrants and res is not None:
                raise TestFailed(f"the {kind} reservation survived its holder unregistering")
        finally:
            cleanup(ctx, b, KEY_B)
            cleanup(ctx, a, KEY_A)

    return test


def prout_clear(ctx: Context) -> None:
    register_key(ctx, KEY_A)
    prout(ctx, A.RESERVE, KEY_A, pr_type=T.WRITE_EXCLUSIVE)
    prout(ctx, A.CLEAR, KEY_A)
    if read_keys(ctx):
        cleanup(ctx, ctx.main, KEY_A)
        raise TestFailed("registrations remain after CLEAR")
    if read_reservation(ctx) is not None:
        raise TestFailed("the reservation remains after CLEAR")


def prout_preempt(ctx: Context) -> None:
    a, b = ctx.main, ctx.second()
    register_key(ctx, KEY_A, a)
    register_key(ctx, KEY_B, b)
    try:
        prout(ctx, A.RESERVE, KEY_A, pr_type=T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, nexus=a)
        prout(ctx, A.PREEMPT, KEY_A, KEY_B, pr_type=T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, nexus=a)
        if KEY_B in read_keys(ctx, a):
            raise TestFailed("PREEMPT did not remove the preempted registration")
        if KEY_A not in read_keys(ctx, a):
            raise TestFailed("PREEMPT removed the preempting initiator's own registration")
    finally:
        cleanup(ctx, a, KEY_A)
        cleanup(ctx, b, KEY_B)


_PR = "SPC-4 §5.7 (persistent reservations)"
register(
    S,
    "PrinReadKeys",
    "Simple",
    prin_read_keys_simple,
    f"READ KEYS lists a registered key and no longer lists it once unregistered.\n\n"
    f"Standard: SPC-4 §6.13.2, {_PR}.",
)
register(
    S,
    "PrinReadKeys",
    "Truncate",
    prin_read_keys_truncate,
    "READ KEYS with a short allocation length returns no more than asked and still "
    "reports the full ADDITIONAL LENGTH.\n\nStandard: SPC-4 §6.13.2, §4.2.5.6.",
)
register(
    S,
    "PrinServiceactionRange",
    "Range",
    prin_sa_range,
    "PERSISTENT RESERVE IN service actions 0-3 (READ KEYS, READ RESERVATION, REPORT "
    "CAPABILITIES, READ FULL STATUS) complete GOOD; 4-31 fail with INVALID FIELD IN "
    "CDB.\n\nStandard: SPC-4 §6.13.1 table 162.",
)
register(
    S,
    "PrinReportCapabilities",
    "Simple",
    prin_caps,
    "REPORT CAPABILITIES returns its 8-byte parameter data with a consistent type mask."
    "\n\nStandard: SPC-4 §6.13.4.",
)
register(
    S,
    "ProutRegister",
    "Simple",
    prout_register_simple,
    "REGISTER AND IGNORE EXISTING KEY registers; REGISTER with a wrong key gets "
    "RESERVATION CONFLICT; REGISTER to key 0 unregisters.\n\nStandard: SPC-4 §5.7.7.",
)
register(
    S,
    "ProutReserve",
    "Simple",
    prout_reserve_simple,
    "Each persistent reservation type can be reserved, is shown by READ RESERVATION with "
    "the holder's key and is gone after RELEASE.\n\nStandard: SPC-4 §5.7.9, §5.7.11.1.",
)
for _kind in ("EA", "WE", "EARO", "WERO", "EAAR", "WEAR"):
    register(
        S,
        "ProutReserve",
        f"Access{_kind}",
        _access(_kind),
        f"Under a {_kind} persistent reservation a non-holder gets the access SPC-4's "
        "table allows: READ and WRITE from a registered and an unregistered second "
        "initiator.\n\nStandard: SPC-4 §5.7.1 table 30 (access by reservation type).",
        dataloss=True,
    )
for _kind in ("EA", "WE", "EARO", "WERO", "EAAR", "WEAR"):
    register(
        S,
        "ProutReserve",
        f"Ownership{_kind}",
        _ownership(_kind),
        f"When the holder of a {_kind} reservation unregisters, the reservation is "
        "released, except for all-registrants types, which stay while a registrant "
        "remains (a RESERVATIONS RELEASED unit attention may follow; it is retried as any "
        "initiator does).\n\nStandard: SPC-4 §5.7.11.2, §5.7.11.3.",
    )
register(
    S,
    "ProutClear",
    "Simple",
    prout_clear,
    "CLEAR removes every registration and the reservation.\n\nStandard: SPC-4 §5.7.11.6.",
)
register(
    S,
    "ProutPreempt",
    "RemoveRegistration",
    prout_preempt,
    "PREEMPT naming another initiator's key removes that registration and keeps the "
    "preempting one's.\n\nStandard: SPC-4 §5.7.11.4.",
)
