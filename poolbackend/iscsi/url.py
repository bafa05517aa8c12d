"""libiscsi's URL format: ``iscsi://[user[%password]@]host[:port]/target-iqn/lun[?args]``.

Also the portal-only form ``iscsi://host[:port]`` (discovery), ``:`` instead of ``%``
between user and password, IPv6 in brackets, and libiscsi's environment variables for
credentials, so existing habits keep working. A password never appears in ``str()`` or in
any error message: errors quote the URL with the password replaced by ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

from poolbackend.iscsi.chap import parse_algorithms
from poolbackend.iscsi.errors import InvalidAddress, InvalidURL
from poolbackend.iscsi.portal import Credentials, Portal
from poolbackend.numbers import is_ascii_uint
from poolbackend.text import printable

_DIGESTS = {
    "none": "None",
    # libiscsi offers CRC32C alone but then takes whatever the target answers (None
    # included, lib/login.c), so in effect CRC32C is preferred; offering "CRC32C,None" gives
    # the same result with a target that has no digests, without a refused negotiation.
    "crc32c": "CRC32C,None",
    "none-crc32c": "None,CRC32C",  # QEMU's names
    "crc32c-none": "CRC32C,None",
}


@dataclass(frozen=True)
class IscsiUrl:
    portal: Portal
    target: str | None = None
    lun: int | None = None
    credentials: Credentials | None = None
    header_digest: str | None = None
    data_digest: str | None = None
    chap_algorithms: tuple[int, ...] | None = None

    def __str__(self) -> str:
        user = f"{self.credentials.username}@" if self.credentials else ""
        path = f"/{self.target}" if self.target else ""
        if self.target and self.lun is not None:
            path += f"/{self.lun}"
        return f"iscsi://{user}{self.portal}{path}"


_SHOWN_ARGUMENTS = frozenset({"target_user", "header_digest", "data_digest", "auth"})
"""Query arguments whose values errors may show; every other value is masked."""
_PLAIN = re.compile(r"[A-Za-z0-9._,-]*")
"""What a shown argument's value may hold (anything else may be part of a password)."""


def redact(url: str) -> str:
    """The URL with everything that may be a password masked, found by position.

    Parsed as :func:`parse_url` does (query from the first '?'; user part up to the last
    '@' before it, its password after its first '%' or ':'): the password is masked, and in
    the query everything from the value of the first argument that is not in
    :data:`_SHOWN_ARGUMENTS` (or whose value is not plain) on, whatever the key's case or
    encoding (a password may hold '&' or '='). A password may also hold '?', which libiscsi
    cannot parse but an error must not show: when the shown part of the query holds an '@',
    the user part is taken to run to it. What is shown never depends on a password's
    characters (in libiscsi's reading), only on the text around it. A password may hold
    '@' and then '?' ('user%pa@ss?wo@host'): its text between that '@' and the '?' is the host
    in libiscsi's reading, but when the hidden part of the query holds an '@' (outside a
    ``target_password`` value, which must not change what is shown) the user part may run
    to it, so nothing after the user name is shown (the same past an '@' shown in the
    query, 'user%pa?s@s=wo@host').
    """
    scheme, sep, rest = url.partition("://")
    head = scheme + sep if sep else ""
    if not sep:
        rest = url
    before, qmark, query = rest.partition("?")
    split = re.search(r"[%:]", before)
    # A user%password start (not host:PORT/... with a PORT) with no '@' after it before the
    # query: the password may go on past the '?', so nothing of the query is shown.
    start = split
    if before.startswith("[") and "]" in before and "@" not in before:  # an IPv6 literal
        start = re.compile(r"[%:]").search(before, before.index("]"))
    ambiguous = (
        start is not None
        and "@" not in before[start.end() :]
        and not (start.group() == ":" and re.fullmatch(r"[0-9]+(/.*)?", before[start.end() :]))
    )
    shown_query = _mask_query(query, hide_key=ambiguous)[0]
    # '@' in the part of the query that is shown: a user part with '?' in its password.
    query_at = shown_query.rfind("@")
    if split is not None and qmark and _ats(query) > shown_query.count("@"):
        if query_at != -1 or before.rfind("@") > split.start():
            # 'user%pa@ss?wo@host', 'user%pa?s@s=wo@host': the text after the last '@'
            # shown may be password ('ss' here), the host lies in the hidden part
            return head + before[: split.start()] + "%***"
    if split is not None and qmark and query_at != -1:
        tail = shown_query[query_at + 1 :]
        return head + before[: split.start()] + "%***@" + tail
    if split is not None and before.rfind("@") > split.start():
        at = before.rfind("@")
        before = before[: split.start()] + "%***" + before[at:]
    elif ambiguous and qmark and start is not None:
        # the password may run on through the whole query ('user%pa?ss&word@host'):
        # nothing after the user name is shown, not even an argument without a value
        return head + before[: start.start()] + "%***"
    return head + before + qmark + shown_query


def _ats(query: str) -> int:
    """How many '@' ``query`` holds outside the values of its ``target_password`` arguments
    (what is shown must not depend on those). More than the shown part of the query holds:
    one is hidden, and a user part with '?' in its password may run to it."""
    count = 0
    for piece in query.split("&"):
        key, eq, _ = piece.partition("=")
        count += (key if eq and unquote_plus(key) == "target_password" else piece).count("@")
    return count


def _mask_query(query: str, *, hide_key: bool = False) -> tuple[str, bool]:
    """``query`` with everything from the value of the first argument not in
    :data:`_SHOWN_ARGUMENTS` (or not plain) on replaced by ``***`` (its key too with
    ``hide_key``), and whether that happened. An argument without '=' holds no value."""
    pieces = []
    for piece in query.split("&"):
        key, eq, value = piece.partition("=")
        if eq and (unquote_plus(key) not in _SHOWN_ARGUMENTS or not _PLAIN.fullmatch(value)):
            # Maybe a password (or a value swallowing one, 'auth=md5?target_password=…'),
            # and a password may hold '&' or '=': hide the rest.
            pieces.append("***" if hide_key else key + eq + "***")
            return "&".join(pieces), True
        pieces.append(piece)
    return "&".join(pieces), False


def parse_url(
    text: str,
    *,
    need_lun: bool = False,
    need_target: bool = False,
    env: Mapping[str, str] | None = None,
) -> IscsiUrl:
    """Parse an iSCSI URL (or a bare ``host[:port]`` portal) into its parts."""
    env = os.environ if env is None else env
    redacted = redact(text)
    shown = printable(redacted, 300)

    def bad(why: str, *pieces: str) -> InvalidURL:
        """``why`` with ``{}`` replaced by ``pieces`` of the URL; a piece the redacted URL
        does not show verbatim (it may hold part of a password) is shown as ``***``."""
        quoted = [printable(p, 300) if p in redacted else "***" for p in pieces]
        return InvalidURL(
            f"invalid iSCSI URL '{shown}': {printable(why.format(*quoted) if pieces else why, 600)}"
        )

    scheme, sep, rest = text.partition("://")
    if not sep:
        rest, scheme = text, "iscsi"
    original_scheme, scheme = scheme, scheme.lower()
    if scheme == "iser":
        raise InvalidURL(f"'{shown}': iSER (RDMA) transport is not supported; use iscsi://")
    if scheme != "iscsi":
        raise bad("unknown scheme '{}://' (expected iscsi://)", original_scheme)
    rest, _, query = rest.partition("?")
    user = password = None
    if "@" in rest:  # the user part ends at the last '@' (a password may hold '/' or '@')
        userinfo, _, rest = rest.rpartition("@")
    else:
        userinfo = None
    authority, _, path = rest.partition("/")
    if userinfo is not None:
        parts = re.split(r"[%:]", userinfo, maxsplit=1)
        user = parts[0] or None
        password = parts[1] if len(parts) > 1 else None
    if not authority:
        raise bad("missing host")
    try:
        portal = Portal.parse(authority)
    except InvalidAddress as exc:
        raise bad(exc.why, *exc.pieces) from None
    segments = [s for s in path.split("/") if s] if path else []
    target = segments[0] if segments else None
    lun = None
    if len(segments) > 2:
        raise bad("too many path parts (expected /target-iqn/lun)")
    if len(segments) == 2:
        if not is_ascii_uint(segments[1]):
            raise bad("LUN '{}' is not a number", segments[1])
        lun = int(segments[1])
        if lun > 16383:
            raise bad(f"LUN {lun} is above 16383, the largest flat-space LUN")
    if need_target and target is None:
        raise bad("missing target IQN (expected iscsi://host[:port]/target-iqn/lun)")
    if need_lun and lun is None:
        raise bad("missing LUN (expected iscsi://host[:port]/target-iqn/lun)")
    args: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in args:
            raise bad("argument '{}' given twice", key)
        args[key] = value
    unknown = set(args) - {"target_user", "target_password", "header_digest", "data_digest", "auth"}
    if unknown:
        raise bad("unknown argument '{}'", sorted(unknown)[0])
    user = user or env.get("LIBISCSI_CHAP_USERNAME") or None
    if password is None:
        password = env.get("LIBISCSI_CHAP_PASSWORD")
    t_user = args.get("target_user") or env.get("LIBISCSI_CHAP_TARGET_USERNAME") or None
    t_pass = args.get("target_password")
    if t_pass is None:
        t_pass = env.get("LIBISCSI_CHAP_TARGET_PASSWORD")
    creds = None
    if user is not None:
        if password is None:
            raise bad(
                "CHAP user '{}' has no password (give user%password or LIBISCSI_CHAP_PASSWORD)",
                user,
            )
        if (t_user is None) != (t_pass is None):
            raise bad("mutual CHAP needs both target_user and target_password")
        if password == "" or t_pass == "":  # CHAP with an empty secret authenticates nothing
            which = "target_password" if password else "password"
            raise bad(f"the CHAP {which} is empty")
        creds = Credentials(
            user, password.encode(), t_user, t_pass.encode() if t_pass is not None else None
        )
    elif t_user is not None:
        raise bad("target_user (mutual CHAP) needs initiator CHAP credentials too")

    def digest(name: str) -> str | None:
        value = args.get(name)
        if value is None:
            return None
        if value.lower() not in _DIGESTS:
            raise bad(f"{name} must be crc32c or none, not '{{}}'", value)
        return _DIGESTS[value.lower()]

    algorithms = None
    if "auth" in args:
        try:
            algorithms = parse_algorithms(args["auth"])
        except ValueError as exc:
            raise bad(str(exc)) from None  # about the auth value, which errors show
    return IscsiUrl(
        portal, target, lun, creds, digest("header_digest"), digest("data_digest"), algorithms
    )
