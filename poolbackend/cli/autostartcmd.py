"""autostart-pools: what libvirtd does for autostart pools when it starts, run at boot.

We are not a daemon, so a oneshot unit (contrib/poolbackend-autostart.service) calls this.
One pool failing (its target down, say) must not keep the others from starting.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_autostart_pools(args: argparse.Namespace) -> int:
    from poolbackend.errors import PoolBackendError
    from poolbackend.pool.backend import Backend

    backend = Backend(libvirt_uri=args.connect)
    failed = 0
    for name in backend.store.autostart_names():
        if backend.store.get_pool(name).state.active:
            continue
        try:
            report = backend.start(name)
        except PoolBackendError as exc:
            failed += 1
            print(f"error: pool {name}: {exc}", file=sys.stderr)
            continue
        for line in report.failures:
            print(f"warning: pool {name}: {line}", file=sys.stderr)
        print(f"Pool {name} started")
    return 1 if failed else 0


def register(sub: Any, cmd: Any) -> None:
    p = cmd(
        sub,
        "autostart-pools",
        "autostartcmd:cmd_autostart_pools",
        "start every inactive pool marked with pool-autostart (for boot; see contrib/)",
    )
    p.add_argument("-c", "--connect", metavar="URI", help="libvirt URI for CHAP secrets")
