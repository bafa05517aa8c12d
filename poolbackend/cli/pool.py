"""virsh's pool commands (pool-define … find-storage-pool-sources), each registered next to
its handler; every one calls the driver (:mod:`poolbackend.pool.driver`) only."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from poolbackend.cli.common import Commands, arg, driver, flag, read_xml, report, say
from poolbackend.errors import ConfigError
from poolbackend.text import printable

if TYPE_CHECKING:
    from collections.abc import Callable

    from poolbackend.pool.driver import PoolRecord, RefreshReport
    from poolbackend.pool.model import PoolState, SourceSpec

commands = Commands()
_FILE = arg("file", metavar="FILE", help="pool XML file (<pool type='iscsi-direct'>)")
_POOL = arg("pool", metavar="POOL", help="pool name or UUID")
_CONNECT_POOL = arg(
    "-c",
    "--connect",
    metavar="URI",
    help="libvirt URI to look up CHAP secrets not in the local store",
)
_CONNECT = arg("-c", "--connect", metavar="URI", help="libvirt URI for CHAP secrets")
_TIMEOUT = arg("-t", "--timeout", default="10", metavar="SECONDS", help="bound for every wait (s)")
_TYPE = arg("type", metavar="TYPE", help="iscsi-direct")


@commands.add("pool-define", "define a persistent pool from an XML file", _FILE)
def pool_define(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import parse_pool_xml

    pool = parse_pool_xml(read_xml(args.file, "pool XML file"), source_name=args.file)
    driver(args).define(pool)
    say(f"Pool {pool.name} defined from {args.file}")
    return 0


@commands.add("pool-create", "create and start a transient pool from an XML file", _FILE, _CONNECT)
def pool_create(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import parse_pool_xml

    pool = parse_pool_xml(read_xml(args.file, "pool XML file"), source_name=args.file)
    report(driver(args).create(pool))
    say(f"Pool {pool.name} created from {args.file}")
    return 0


@commands.add("pool-start", "start a pool (log in and scan its LUNs)", _POOL, _CONNECT_POOL)
def pool_start(args: argparse.Namespace) -> int:
    return _scanned(driver(args).start(args.pool), "started")


@commands.add("pool-refresh", "rescan the LUNs of an active pool", _POOL, _CONNECT_POOL)
def pool_refresh(args: argparse.Namespace) -> int:
    return _scanned(driver(args).refresh(args.pool), "refreshed")


def _scanned(result: RefreshReport, done: str) -> int:
    report(result)
    say(f"Pool {result.name} {done}")
    return 0


@commands.add("pool-destroy", "stop an active pool (its definition stays)", _POOL, _CONNECT_POOL)
def pool_destroy(args: argparse.Namespace) -> int:
    name = driver(args).destroy(args.pool)
    say(f"Pool {name} destroyed")
    return 0


@commands.add("pool-undefine", "remove an inactive pool's definition", _POOL, _CONNECT_POOL)
def pool_undefine(args: argparse.Namespace) -> int:
    name = driver(args).undefine(args.pool)
    say(f"Pool {name} has been undefined")
    return 0


@commands.add(
    "pool-build",
    "no-op for iscsi-direct pools (as in libvirt)",
    _POOL,
    _CONNECT_POOL,
    flag("--no-overwrite", "accepted like virsh (no effect)"),
    flag("--overwrite", "accepted like virsh (no effect)"),
)
def pool_build(args: argparse.Namespace) -> int:
    if args.overwrite and args.no_overwrite:
        raise ConfigError("Options --no-overwrite and --overwrite are mutually exclusive")
    say(f"Pool {driver(args).build(args.pool)} built")
    return 0


@commands.add(
    "pool-delete", "not supported for iscsi-direct pools (as in libvirt)", _POOL, _CONNECT_POOL
)
def pool_delete(args: argparse.Namespace) -> int:
    driver(args).delete(args.pool)
    return 0


@commands.add(
    "pool-autostart",
    "mark a pool to be started automatically",
    _POOL,
    _CONNECT_POOL,
    flag("--disable", "unmark it"),
)
def pool_autostart(args: argparse.Namespace) -> int:
    name = driver(args).set_autostart(args.pool, not args.disable)
    say(f"Pool {name} {'unmarked' if args.disable else 'marked'} as autostarted")
    return 0


def _sizes(state: PoolState, fmt: Callable[[int], str]) -> list[str]:
    """Capacity, allocation and available, formatted, in virsh's order."""
    return [fmt(state.capacity), fmt(state.allocation), fmt(state.available)]


def _state_word(record: PoolRecord, details: bool) -> str:
    if record.state.active:
        return "running" if details else "active"
    return "inactive"


@commands.add(
    "pool-list",
    "list pools",
    flag("--all", "include inactive pools"),
    arg("--inactive", action="store_true", help=argparse.SUPPRESS),
    flag("--details", "sizes, persistence"),
    flag("--name", "names only"),
    flag("--uuid", "UUIDs only"),
)
def pool_list(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_table, pretty_capacity, sort_names

    if args.details and args.uuid:
        raise ConfigError("Options --details and --uuid are mutually exclusive")
    records = {r.pool.name: r for r in driver(args).list_pools()}
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
        sizes = _sizes(st, pretty_capacity) if st.active else ["-", "-", "-"]
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


@commands.add(
    "pool-edit",
    "edit a pool's definition with $VISUAL/$EDITOR (default vi), then define it",
    _POOL,
)
def pool_edit(args: argparse.Namespace) -> int:
    from poolbackend.cli.editcmd import edit_pool

    return edit_pool(driver(args), args.pool)


@commands.add(
    "pool-info",
    "pool state and sizes",
    _POOL,
    _CONNECT_POOL,
    flag("--bytes", "sizes in bytes"),
)
def pool_info(args: argparse.Namespace) -> int:
    from poolbackend.cli.table import format_labelled, pretty_capacity

    r = driver(args).lookup_pool(args.pool)
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

        pairs += zip(("Capacity:", "Allocation:", "Available:"), _sizes(st, size), strict=True)
    print(format_labelled(pairs), end="")
    return 0


@commands.add(
    "pool-dumpxml",
    "the pool XML (with live sizes when active)",
    _POOL,
    _CONNECT_POOL,
    flag("--inactive", "the definition without live sizes"),
)
def pool_dumpxml(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import format_pool_xml

    r = driver(args).lookup_pool(args.pool)
    if r.state.active and not args.inactive:
        print(format_pool_xml(r.pool, r.state))  # the running definition with live sizes
    else:  # what the next start uses: a pool-define on an active pool is pending here
        print(format_pool_xml(r.inactive_pool))
    return 0


@commands.add("pool-name", "pool name from its UUID", arg("uuid", metavar="UUID", help="pool UUID"))
def pool_name(args: argparse.Namespace) -> int:
    print(driver(args).lookup_pool(args.uuid).pool.name + "\n")
    return 0


@commands.add("pool-uuid", "pool UUID from its name", _POOL, _CONNECT_POOL)
def pool_uuid(args: argparse.Namespace) -> int:
    print(driver(args).lookup_pool(args.pool).pool.uuid + "\n")
    return 0


def _discover(args: argparse.Namespace, spec: SourceSpec) -> int:
    from poolbackend.cli.initiator_opts import timeout_option
    from poolbackend.pool.xml.pool import format_sources_xml

    targets = driver(args).find_sources(spec, timeout_option(args))
    print(format_sources_xml(spec.host, spec.port, spec.initiator_iqn, targets))
    return 0


def _check_type(args: argparse.Namespace) -> None:
    if args.type != "iscsi-direct":
        raise ConfigError(f"unsupported pool type '{printable(args.type)}' (only iscsi-direct)")


@commands.add(
    "find-storage-pool-sources-as",
    "discover the targets of a portal (SendTargets)",
    _TYPE,
    arg("host", metavar="HOST", nargs="?", help="portal host: DNS name, IPv4 or IPv6 address"),
    arg("port", metavar="PORT", nargs="?", help="portal port (default 3260)"),
    arg("--initiator", metavar="IQN", help="initiator IQN (required)"),
    _TIMEOUT,
)
def find_sources_as(args: argparse.Namespace) -> int:
    from poolbackend.pool.model import SourceSpec
    from poolbackend.pool.xml.pool import host_name, port_number

    _check_type(args)
    if not args.host:
        raise ConfigError("invalid argument: hostname must be specified for iscsi sources")
    if not args.initiator:
        raise ConfigError("unsupported configuration: missing initiator IQN")
    port = None if args.port is None else port_number(args.port)
    return _discover(args, SourceSpec(host_name(args.host), port, args.initiator))


@commands.add(
    "find-storage-pool-sources",
    "discover targets from a <source> spec file",
    _TYPE,
    arg("srcSpec", metavar="FILE", nargs="?", help="<source> XML with <host> and <initiator>"),
    _TIMEOUT,
)
def find_sources(args: argparse.Namespace) -> int:
    from poolbackend.pool.xml.pool import parse_source_xml

    _check_type(args)
    if not args.srcSpec:
        raise ConfigError("invalid argument: hostname must be specified for iscsi sources")
    return _discover(
        args,
        parse_source_xml(read_xml(args.srcSpec, "source XML file"), source_name=args.srcSpec),
    )
