"""autostart-pools: what libvirtd does for autostart pools when it starts, run at boot.

We are not a daemon, so a oneshot unit (contrib/poolbackend-autostart.service) calls this.
One pool failing (its target down, say) must not keep the others from starting. The goal
is "every autostart pool is active": a pool that another command (a second autostart-pools,
a pool-start) activated meanwhile is a success, not a failure.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from poolbackend.cli.common import Commands, arg, driver
from poolbackend.text import emit, printable

if TYPE_CHECKING:
    from poolbackend.pool.driver import Driver

commands = Commands()


@commands.add(
    "autostart-pools",
    "start every inactive pool marked with pool-autostart (for boot; see contrib/)",
    arg("-c", "--connect", metavar="URI", help="libvirt URI for CHAP secrets"),
)
def cmd_autostart_pools(args: argparse.Namespace) -> int:
    from poolbackend.errors import PoolBackendError

    pools = driver(args)
    failed = 0
    for name in pools.autostart_names():
        if pools.lookup_pool(name).state.active:
            continue
        try:
            started = pools.start(name)
        except PoolBackendError as exc:
            if _active(pools, name):
                print(f"Pool {name} was started by another command")
                continue
            failed += 1
            emit("error", f"pool {printable(name)}: {exc}")
            continue
        for line in started.failures:
            emit("warning", f"pool {printable(name)}: {line}")
        print(f"Pool {printable(name)} started")
    return 1 if failed else 0


def _active(pools: Driver, name: str) -> bool:
    """Whether the pool is active now (a failing lookup counts as not active)."""
    from poolbackend.errors import PoolBackendError

    try:
        return pools.lookup_pool(name).state.active
    except PoolBackendError:
        return False
