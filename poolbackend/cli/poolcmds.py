"""virsh-named pool, volume and secret commands: argument parsing and virsh-style output."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from poolbackend.errors import ConfigError, FileError, PoolBackendError
from poolbackend.numbers import ascii_int
from poolbackend.text import emit, printable

if TYPE_CHECKING:
    from poolbackend.pool.backend import Backend, RefreshReport
    from poolbackend.pool.model import SourceSpec, Volume
    from poolbackend.pool.store import PoolRecord, Store

Register = Callable[[Any, str, str, str], argparse.ArgumentParser]


def _backend(args: argparse.Namespace) -> Backend:
    from poolbackend.pool.backend import Backend

    return Backend(libvirt_uri=getattr(args, "connect", None))


def _store() -> Store:
    from poolbackend.pool.store import Store

    return Store.default()


def _read_file(path: str, what: str, limit: int = 16 * 1024 * 1024) -> bytes:
    """The file's content; refused (never truncated) when it is larger than ``limit``."""

    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise FileError(f"cannot read {what} '{printable(path)}': {exc.strerror}") from None
    if len(data) > limit:
        raise ConfigError(f"{what} '{printable(path)}' is too large (more than {limit} bytes)")
    return data


def _read_xml(path: str, what: str) -> bytes:
    from poolbackend.pool.xml.safe import MAX_XML_BYTES

    return _read_file(path, what, MAX_XML_BYTES)


def _say(text: str) -> None:
    print(text + "\n")


def _report(report: RefreshReport) -> None:
    for line in report.failures:
        emit("warning", line)


# -- pools -------------------------------------------------------------------------------
def pool_define(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import parse_pool_xml

    pool = parse_pool_xml(_read_xml(args.file, "pool XML file"), source_name=args.file)
    store = _store()
    with store.locked():
        store.define(pool)
    _say(f"Pool {pool.name} defined from {args.file}")
    return 0


def pool_create(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import parse_pool_xml

    pool = parse_pool_xml(_read_xml(args.file, "pool XML file"), source_name=args.file)
    _report(_backend(args).create(pool))
    _say(f"Pool {pool.name} created from {args.file}")
    return 0


def pool_start(args: argparse.Namespace) -> int:
    b = _backend(args)
    _report(b.start(args.pool))
    _say(f"Pool {b.store.get_pool(args.pool).pool.name} started")
    return 0


def pool_refresh(args: argparse.Namespace) -> int:
    b = _backend(args)
    _report(b.refresh(args.pool))
    _say(f"Pool {b.store.get_pool(args.pool).pool.name} refreshed")
    return 0


def pool_destroy(args: argparse.Namespace) -> int:
    name = _backend(args).destroy(args.pool)
    _say(f"Pool {name} destroyed")
    return 0


def pool_undefine(args: argparse.Namespace) -> int:
    name = _store().undefine(args.pool)
    _say(f"Pool {name} has been undefined")
    return 0


def pool_autostart(args: argparse.Namespace) -> int:
    store = _store()
    with store.locked():
        name = store.get_pool(args.pool).pool.name
        store.set_autostart(name, not args.disable)
    _say(f"Pool {name} {'unmarked' if args.disable else 'marked'} as autostarted")
    return 0


def pool_build(args: argparse.Namespace) -> int:
    if args.overwrite and args.no_overwrite:
        raise ConfigError("Options --no-overwrite and --overwrite are mutually exclusive")
    store = _store()
    record = store.get_pool(args.pool)
    if record.state.active:
        raise PoolBackendError(
            "Requested operation is not valid: storage pool "
            f"'{printable(record.pool.name)}' is already active"
        )
    _say(f"Pool {record.pool.name} built")
    return 0


def pool_delete(args: argparse.Namespace) -> int:
    from poolbackend.pool.backend import not_supported

    record = _store().get_pool(args.pool)
    if record.state.active:
        raise PoolBackendError(
            "Requested operation is not valid: storage pool "
            f"'{printable(record.pool.name)}' is still active"
        )
    raise not_supported("pool does not support pool deletion")


def _state_word(record: PoolRecord, details: bool) -> str:
    if record.state.active:
        return "running" if details else "active"
    return "inactive"


def pool_list(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_table, pretty_capacity, sort_names

    if args.details and args.uuid:
        raise ConfigError("Options --details and --uuid are mutually exclusive")
    records = {r.pool.name: r for r in _store().list_pools()}
    shown = [records[n] for n in sort_names(records) if args.all or records[n].state.active]
    if args.name:
        print("".join(f"{r.pool.name:<20}\n" for r in shown))
        return 0
    if args.uuid:
        print("".join(f"{r.pool.uuid}\n" for r in shown))
        return 0
    if not args.details:
        rows = [
            [r.pool.name, _state_word(r, False), "yes" if r.state.autostart else "no"]
            for r in shown
        ]
        print(format_table(["Name", "State", "Autostart"], rows), end="")
        return 0
    rows = []
    for r in shown:
        st = r.state
        sizes = (
            [
                pretty_capacity(st.capacity),
                pretty_capacity(st.allocation),
                pretty_capacity(st.available),
            ]
            if st.active
            else ["-", "-", "-"]
        )
        rows.append(
            [
                r.pool.name,
                _state_word(r, True),
                "yes" if st.autostart else "no",
                "yes" if st.persistent else "no",
                *sizes,
            ]
        )
    print(
        format_table(
            ["Name", "State", "Autostart", "Persistent", "Capacity", "Allocation", "Available"],
            rows,
        ),
        end="",
    )
    return 0


def pool_info(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_labelled, pretty_capacity

    r = _store().get_pool(args.pool)
    st = r.state
    pairs = [
        ("Name:", r.pool.name),
        ("UUID:", r.pool.uuid),
        ("State:", "running" if st.active else "inactive"),
        ("Persistent:", "yes" if st.persistent else "no"),
        ("Autostart:", "yes" if st.autostart else "no"),
    ]
    if st.active:

        def size(n: int) -> str:
            return str(n) if args.bytes else pretty_capacity(n)

        pairs += [
            ("Capacity:", size(st.capacity)),
            ("Allocation:", size(st.allocation)),
            ("Available:", size(st.available)),
        ]
    print(format_labelled(pairs), end="")
    return 0


def pool_dumpxml(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import format_pool_xml

    r = _store().get_pool(args.pool)
    if r.state.active and not args.inactive:
        print(format_pool_xml(r.pool, r.state))  # the running definition with live sizes
    else:  # what the next start uses: a pool-define on an active pool is pending here
        print(format_pool_xml(r.inactive_pool))
    return 0


def pool_name(args: argparse.Namespace) -> int:
    print(_store().get_pool(args.uuid).pool.name + "\n")
    return 0


def pool_uuid(args: argparse.Namespace) -> int:
    print(_store().get_pool(args.pool).pool.uuid + "\n")
    return 0


def _discover(args: argparse.Namespace, spec: SourceSpec) -> int:
    from poolbackend.cli.initiator_opts import timeout_option
    from poolbackend.pool.xml.pool import format_sources_xml

    targets = _backend(args).find_sources(spec, timeout_option(args))
    print(format_sources_xml(spec.host, spec.port, spec.initiator_iqn, targets))
    return 0


def _check_type(args: argparse.Namespace) -> None:
    if args.type != "iscsi-direct":
        raise ConfigError(f"unsupported pool type '{printable(args.type)}' (only iscsi-direct)")


def find_sources_as(args: argparse.Namespace) -> int:
    from poolbackend.pool.model import SourceSpec

    _check_type(args)
    if not args.host:
        raise ConfigError("invalid argument: hostname must be specified for iscsi sources")
    if not args.initiator:
        raise ConfigError("unsupported configuration: missing initiator IQN")
    port = None
    if args.port is not None:
        try:
            port = ascii_int(args.port, low=1, high=65535)
        except ValueError:
            raise ConfigError(f"invalid port '{printable(args.port)}' (expected 1-65535)") from None
    from poolbackend.pool.xml.pool import host_name

    return _discover(args, SourceSpec(host_name(args.host), port, args.initiator))


def find_sources(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import parse_source_xml

    _check_type(args)
    if not args.srcSpec:
        raise ConfigError("invalid argument: hostname must be specified for iscsi sources")
    return _discover(
        args,
        parse_source_xml(_read_xml(args.srcSpec, "source XML file"), source_name=args.srcSpec),
    )


# -- volumes -----------------------------------------------------------------------------
def _active_pool(args: argparse.Namespace) -> PoolRecord:
    from poolbackend.pool.lookup import active_pool

    return active_pool(_store(), args.pool)


def vol_list(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_table, pretty_capacity, sort_names

    r = _active_pool(args)
    by_name = {v.name: v for v in r.state.volumes}
    vols = [by_name[n] for n in sort_names(by_name)]
    if args.details:
        rows = [
            [v.name, v.path, v.type, pretty_capacity(v.capacity), pretty_capacity(v.allocation)]
            for v in vols
        ]
        print(format_table(["Name", "Path", "Type", "Capacity", "Allocation"], rows), end="")
    else:
        print(format_table(["Name", "Path"], [[v.name, v.path] for v in vols]), end="")
    return 0


def _volume(args: argparse.Namespace) -> Volume:
    from poolbackend.pool.lookup import find_volume

    return find_volume(_store(), args.vol, args.pool)[1]


def vol_info(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_labelled, pretty_capacity

    v = _volume(args)

    def size(n: int) -> str:
        return f"{n} bytes" if args.bytes else pretty_capacity(n)

    pairs = [
        ("Name:", v.name),
        ("Type:", v.type),
        ("Capacity:", size(v.capacity)),
        ("Allocation:", size(v.allocation)),
    ]
    if args.scsi:  # what libvirt cannot show: the LUN behind the volume
        r = v.reported
        pairs += [
            ("LUN:", str(v.lun)),
            # what attach-volume writes as <source name='IQN/N'> and the bytes behind it
            ("QEMU LUN:", "unknown (run pool-refresh)" if r is None else str(r.qemu)),
            ("Reported as:", "unknown (run pool-refresh)" if r is None else r.hex),
            ("Device type:", f"{v.device_type_name} ({v.device_type})"),
            ("Block size:", str(v.block_size)),
            ("Vendor:", v.vendor or "-"),
            ("Product:", v.product or "-"),
        ]
        if v.device_type == 0:  # asked live: LBPME/LBPRZ, VPD 0xB0/0xB2 (pool/thin.py)
            from poolbackend.pool import thin

            try:
                pairs += thin.volume_provisioning(_backend(args), args.vol, args.pool).lines()
            except PoolBackendError as exc:
                pairs.append(("Provisioning:", f"unknown ({exc})"))
    print(format_labelled(pairs), end="")
    return 0


def vol_dumpxml(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.volume import format_volume_xml

    print(format_volume_xml(_volume(args)))  # virsh ends dumps with a blank line
    return 0


def vol_key(args: argparse.Namespace) -> int:
    print(_volume(args).key + "\n")
    return 0


def vol_path(args: argparse.Namespace) -> int:
    print(_volume(args).path + "\n")
    return 0


def vol_name(args: argparse.Namespace) -> int:
    from poolbackend.pool.lookup import find_volume

    # virsh's vol-name has no --pool (so no "--pool might help"); ours honours one if given
    print(find_volume(_store(), args.vol, args.pool, pool_option=None)[1].name + "\n")
    return 0


def vol_pool(args: argparse.Namespace) -> int:
    from poolbackend.pool.lookup import find_volume

    print(find_volume(_store(), args.vol, args.pool, pool_option=None)[0].pool.name + "\n")
    return 0


class _Bar:
    """A progress bar on stderr, only when stdout is a terminal.

    A total of 0 means it is not known (reading from a pipe): the bar then shows the bytes
    done so far instead of a percentage.
    """

    def __init__(self, label: str) -> None:
        self.label = printable(label)
        self.enabled = sys.stdout.isatty() and sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if total <= 0:  # unknown total (reading a pipe): the amount so far, each MiB
            step = done >> 20
            if step != self._last:
                self._last = step
                from poolbackend.cli.table import pretty_capacity

                text = f"\r{self.label} {pretty_capacity(done)}"
                print(f"{text:<40}", end="", file=sys.stderr, flush=True)
            return
        pct = min(100, done * 100 // total)
        if pct != self._last:
            self._last = pct
            bar = "#" * (pct // 4)
            print(f"\r{self.label} [{bar:<25}] {pct:3d} %", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self._last >= 0:
            print(file=sys.stderr)


def vol_wipe(args: argparse.Namespace) -> int:
    bar = _Bar("Wiping")
    try:
        _backend(args).wipe(args.vol, args.pool, args.algorithm, bar)
    finally:
        bar.close()
    _say(f"Vol {args.vol} wiped")
    return 0


def _size_arg(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return ascii_int(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a non-negative number of bytes, not '{printable(value)}'"
        ) from None


def vol_download(args: argparse.Namespace) -> int:
    from poolbackend.pool import localfile

    offset = _size_arg(args.offset, "--offset") or 0
    length = _size_arg(args.length, "--length")
    b = _backend(args)
    b.find_volume(args.vol, args.pool)  # fail before anything else
    out = localfile.Output(args.file)  # checks the output; touches nothing
    localfile.interrupt_on_sigterm()
    bar = _Bar("Downloading")
    try:
        b.download(
            args.vol,
            args.pool,
            out.open,
            offset=offset,
            length=length,
            sparse=args.sparse,  # reads only the mapped extents of a thin LUN
            holes=out.holes,  # a fresh file gets holes; elsewhere zeros are written
            progress=bar,
        )
        out.commit()
    except OSError as exc:
        raise out.error(exc) from None
    finally:
        out.abort()  # nothing new is left behind unless committed
        bar.close()
    return 0


def vol_upload(args: argparse.Namespace) -> int:
    from poolbackend.pool import localfile

    offset = _size_arg(args.offset, "--offset") or 0
    length = _size_arg(args.length, "--length")
    src = localfile.Input(args.file, force=args.force)  # a regular file is checked now
    localfile.interrupt_on_sigterm()
    bar = _Bar("Uploading")
    try:
        _backend(args).upload(
            args.vol,
            args.pool,
            src.open,
            offset=offset,
            length=length,
            sparse=args.sparse,  # holes and zero blocks deallocated (pool/sparse.py)
            progress=bar,
        )
    except OSError as exc:
        raise src.error(exc) from None
    finally:
        src.close()
        bar.close()
    return 0


# -- secrets -----------------------------------------------------------------------------
def _secrets() -> Any:
    from poolbackend.pool.secrets import SecretStore

    return SecretStore.default()


def secret_define(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.secret import parse_secret_xml

    secret = parse_secret_xml(_read_xml(args.file, "secret XML file"), source_name=args.file)
    stored = _secrets().define(secret)
    _say(f"Secret {stored.uuid} created")
    return 0


def secret_set_value(args: argparse.Namespace) -> int:
    if args.value is not None or args.value_option is not None:
        raise ConfigError(
            "a secret value is never taken from the command line (visible to every user in "
            "the process list); use --file, standard input or the prompt"
        )
    if args.file:
        value = _read_file(args.file, "secret value file")
        if not args.plain:
            import base64
            import binascii

            try:
                value = base64.b64decode(value.strip(), validate=True)
            except binascii.Error:
                raise ConfigError(
                    f"'{args.file}' is not base64 (use --plain for raw bytes)"
                ) from None
    elif args.interactive or sys.stdin.isatty():
        value = getpass.getpass("Enter new value for secret:").encode()
    else:
        value = sys.stdin.buffer.read().rstrip(b"\n")
    if not value:
        raise ConfigError("refusing to set an empty secret value")
    if value.endswith((b"\n", b"\r")):  # kept, like virsh's --file --plain: it may be meant
        emit(
            "warning",
            "the secret value ends in a newline, which is kept as part of it (as "
            "virsh does) and will be part of the CHAP password; remove it if that is not meant",
        )
    _secrets().set_value(args.secret, value)
    _say("Secret value set")
    return 0


def secret_list(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_table

    rows = [[s.uuid, s.usage_text] for s in _secrets().list()]
    print(format_table(["UUID", "Usage"], rows), end="")
    return 0


def secret_undefine(args: argparse.Namespace) -> int:
    uuid = _secrets().undefine(args.secret)
    _say(f"Secret {uuid} deleted")
    return 0


def secret_dumpxml(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.secret import format_secret_xml

    print(format_secret_xml(_secrets().get(args.secret)))
    return 0


# -- registration ------------------------------------------------------------------------
def register(sub: Any, cmd: Register) -> None:
    me = "poolcmds:"

    def pool_cmd(name: str, func: str, text: str) -> argparse.ArgumentParser:
        p = cmd(sub, name, me + func, text)
        p.add_argument("pool", metavar="POOL", help="pool name or UUID")
        p.add_argument(
            "-c",
            "--connect",
            metavar="URI",
            help="libvirt URI to look up CHAP secrets not in the local store",
        )
        return p

    p = cmd(sub, "pool-define", me + "pool_define", "define a persistent pool from an XML file")
    p.add_argument("file", metavar="FILE", help="pool XML file (<pool type='iscsi-direct'>)")
    p = cmd(
        sub, "pool-create", me + "pool_create", "create and start a transient pool from an XML file"
    )
    p.add_argument("file", metavar="FILE", help="pool XML file (<pool type='iscsi-direct'>)")
    p.add_argument("-c", "--connect", metavar="URI", help="libvirt URI for CHAP secrets")
    pool_cmd("pool-start", "pool_start", "start a pool (log in and scan its LUNs)")
    pool_cmd("pool-refresh", "pool_refresh", "rescan the LUNs of an active pool")
    pool_cmd("pool-destroy", "pool_destroy", "stop an active pool (its definition stays)")
    pool_cmd("pool-undefine", "pool_undefine", "remove an inactive pool's definition")
    p = pool_cmd("pool-build", "pool_build", "no-op for iscsi-direct pools (as in libvirt)")
    p.add_argument("--no-overwrite", action="store_true", help="accepted like virsh (no effect)")
    p.add_argument("--overwrite", action="store_true", help="accepted like virsh (no effect)")
    pool_cmd("pool-delete", "pool_delete", "not supported for iscsi-direct pools (as in libvirt)")
    p = pool_cmd("pool-autostart", "pool_autostart", "mark a pool to be started automatically")
    p.add_argument("--disable", action="store_true", help="unmark it")
    p = cmd(sub, "pool-list", me + "pool_list", "list pools")
    p.add_argument("--all", action="store_true", help="include inactive pools")
    p.add_argument("--inactive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--details", action="store_true", help="sizes, persistence")
    p.add_argument("--name", action="store_true", help="names only")
    p.add_argument("--uuid", action="store_true", help="UUIDs only")
    p = cmd(
        sub,
        "pool-edit",
        "editcmd:pool_edit",
        "edit a pool's definition with $VISUAL/$EDITOR (default vi), then define it",
    )
    p.add_argument("pool", metavar="POOL", help="pool name or UUID")
    p = pool_cmd("pool-info", "pool_info", "pool state and sizes")
    p.add_argument("--bytes", action="store_true", help="sizes in bytes")
    p = pool_cmd("pool-dumpxml", "pool_dumpxml", "the pool XML (with live sizes when active)")
    p.add_argument("--inactive", action="store_true", help="the definition without live sizes")
    p = cmd(sub, "pool-name", me + "pool_name", "pool name from its UUID")
    p.add_argument("uuid", metavar="UUID", help="pool UUID")
    pool_cmd("pool-uuid", "pool_uuid", "pool UUID from its name")
    p = cmd(
        sub,
        "find-storage-pool-sources-as",
        me + "find_sources_as",
        "discover the targets of a portal (SendTargets)",
    )
    p.add_argument("type", metavar="TYPE", help="iscsi-direct")
    p.add_argument(
        "host", metavar="HOST", nargs="?", help="portal host: DNS name, IPv4 or IPv6 address"
    )
    p.add_argument("port", metavar="PORT", nargs="?", help="portal port (default 3260)")
    p.add_argument("--initiator", metavar="IQN", help="initiator IQN (required)")
    p.add_argument(
        "-t", "--timeout", default="10", metavar="SECONDS", help="bound for every wait (s)"
    )
    p = cmd(
        sub,
        "find-storage-pool-sources",
        me + "find_sources",
        "discover targets from a <source> spec file",
    )
    p.add_argument("type", metavar="TYPE", help="iscsi-direct")
    p.add_argument(
        "srcSpec", metavar="FILE", nargs="?", help="<source> XML with <host> and <initiator>"
    )
    p.add_argument(
        "-t", "--timeout", default="10", metavar="SECONDS", help="bound for every wait (s)"
    )

    def vol_cmd(
        name: str, func: str, text: str, pool_required: bool = False
    ) -> argparse.ArgumentParser:
        p = cmd(sub, name, me + func, text)
        p.add_argument("vol", metavar="VOL", help="volume name (with --pool), key or path")
        p.add_argument("pool_pos", metavar="POOL", nargs="?", help=argparse.SUPPRESS)
        p.add_argument("--pool", required=False, help="pool name or UUID")
        p.add_argument("-c", "--connect", metavar="URI", help="libvirt URI for CHAP secrets")
        return p

    p = cmd(sub, "vol-list", me + "vol_list", "list the volumes (LUNs) of an active pool")
    p.add_argument("pool_pos", metavar="POOL", nargs="?", help="pool name or UUID")
    p.add_argument("--pool", help="pool name or UUID")
    p.add_argument("--details", action="store_true", help="type and sizes")
    p = vol_cmd("vol-info", "vol_info", "volume type and sizes")
    p.add_argument("--bytes", action="store_true", help="sizes in bytes")
    p.add_argument(
        "--scsi",
        action="store_true",
        help="also the LUN, the QEMU LUN attach-volume uses, device type, block size and the "
        "provisioning facts asked from the target (LBPME/LBPRZ, VPD 0xB2 and 0xB0)",
    )
    vol_cmd("vol-dumpxml", "vol_dumpxml", "the volume XML")
    vol_cmd("vol-key", "vol_key", "the volume key")
    vol_cmd("vol-path", "vol_path", "the volume path")
    vol_cmd("vol-name", "vol_name", "the volume name from its key or path")
    vol_cmd("vol-pool", "vol_pool", "the pool of a volume key or path")
    p = vol_cmd("vol-wipe", "vol_wipe", "overwrite every block of a volume")
    p.add_argument(
        "--algorithm",
        default="zero",
        help="zero (default), trim, nnsa, dod, bsi, gutmann, schneier, pfitzner7, "
        "pfitzner33, random",
    )
    for name, func, text in (
        ("vol-download", "vol_download", "copy a volume's data to FILE"),
        ("vol-upload", "vol_upload", "write FILE's data into a volume"),
    ):
        p = cmd(sub, name, me + func, text)
        p.add_argument("vol", metavar="VOL", help="volume name (with --pool), key or path")
        p.add_argument(
            "file",
            metavar="FILE",
            help="file to write, - for standard output (a file is replaced only when the "
            "download succeeded)"
            if name == "vol-download"
            else "file to read, - for standard input",
        )
        p.add_argument("--pool", help="pool name or UUID")
        p.add_argument("--offset", help="byte offset in the volume")
        p.add_argument("--length", help="number of bytes (default: to the end)")
        p.add_argument("-c", "--connect", metavar="URI", help="libvirt URI for CHAP secrets")
        if name == "vol-download":
            p.add_argument(
                "--sparse",
                action="store_true",
                help="read only the mapped extents of a thin LUN (GET LBA STATUS) and leave "
                "holes for unmapped and zero blocks (zeros are written to a pipe or device)",
            )
        else:
            p.add_argument(
                "--sparse",
                action="store_true",
                help="turn the file's holes and zero blocks into UNMAP (thin LUN reading "
                "zeros there) or WRITE SAME of zeros, instead of writing every zero",
            )
            p.add_argument(
                "--force",
                action="store_true",
                help="upload an image file (qcow2, vmdk, vhdx, ...) byte for byte anyway",
            )
        p.set_defaults(pool_pos=None)
    from poolbackend.cli import unsupported

    unsupported.register(sub, cmd)
    p = cmd(sub, "secret-define", me + "secret_define", "define a CHAP secret from an XML file")
    p.add_argument("file", metavar="FILE", help="secret XML file (<secret>, usage type iscsi)")
    p = cmd(
        sub,
        "secret-set-value",
        me + "secret_set_value",
        "set a secret's value (from --file, stdin, or a prompt; never from argv)",
    )
    p.add_argument("secret", metavar="SECRET", help="UUID or usage")
    p.add_argument("--file", help="file holding the value (base64 unless --plain)")
    p.add_argument(
        "--plain",
        action="store_true",
        help="the --file content is the raw value, byte for byte (a trailing newline is kept, "
        "as virsh does)",
    )
    p.add_argument("--interactive", action="store_true", help="prompt for the value")
    # Caught here so that the refusal never repeats the value (argparse's error would).
    p.add_argument(
        "value",
        nargs="?",
        metavar="VALUE",
        help="refused: a value on the command line is visible to every user (ps, /proc)",
    )
    p.add_argument(
        "--base64",
        "--value",
        dest="value_option",
        metavar="VALUE",
        help="refused, like VALUE (virsh's --base64 takes the value from argv)",
    )
    cmd(sub, "secret-list", me + "secret_list", "list secrets")
    p = cmd(sub, "secret-undefine", me + "secret_undefine", "delete a secret and its value")
    p.add_argument("secret", metavar="SECRET", help="UUID or usage")
    p = cmd(sub, "secret-dumpxml", me + "secret_dumpxml", "the secret XML (never the value)")
    p.add_argument("secret", metavar="SECRET", help="UUID or usage")
