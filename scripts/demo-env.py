#!/usr/bin/env python3
"""Start a throw-away demo environment for trying poolbackend by hand.

    python3 scripts/demo-env.py [--libvirtd] [--duration SECONDS]

Starts a private tgtd on 127.0.0.1 (free port) with

* target 1 ``iqn.2026-11.example:target1``: LUN1 64 MiB, LUN2 128 MiB,
  LUN3 8 MiB with 4096-byte blocks (no CHAP);
* target 2 ``iqn.2026-11.example:chap``: LUN1 32 MiB, incoming CHAP
  ``inuser``/``insecret12345``, outgoing (mutual) ``outuser``/``outsecret12345``;

and, with ``--libvirtd``, a private session-mode libvirtd (libvirt's own
iscsi-direct backend, for side-by-side comparison). Prints the portal, URLs and
the virsh URI, then waits until Ctrl-C or ``--duration`` seconds (default 1800)
and shuts everything down cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.libvirtd import Libvirtd
from tests.harness.tgtd import MiB, Tgtd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--libvirtd", action="store_true", help="also start a private libvirtd")
    ap.add_argument("--ipv6", action="store_true", help="listen on [::1] instead of 127.0.0.1")
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds to stay up")
    args = ap.parse_args()

    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    with Tgtd.start(host="::1" if args.ipv6 else "127.0.0.1") as t:
        t.new_target(1, "iqn.2026-11.example:target1")
        t.add_lun(1, 1, 64 * MiB)
        t.add_lun(1, 2, 128 * MiB)
        t.add_lun(1, 3, 8 * MiB, blocksize=4096)
        t.new_target(2, "iqn.2026-11.example:chap")
        t.add_lun(2, 1, 32 * MiB)
        t.add_account("inuser", "insecret12345")
        t.bind_account(2, "inuser")
        t.add_account("outuser", "outsecret12345")
        t.bind_account(2, "outuser", outgoing=True)
        print(f"tgtd pid {t.pid}, portal {t.portal}, files in {t.workdir}")
        print(f"  host={t.host} port={t.port}")
        print(f"  {t.url(1, 1)}")
        print(f"  {t.url(2, 1, user='inuser', password='insecret12345')}")
        print(f"  tgtadm: TGT_IPC_SOCKET={t.ipc_prefix} tgtadm -C {t.control_port} ...")
        lv = Libvirtd.start() if args.libvirtd else None
        try:
            if lv is not None:
                print(f"libvirtd pid {lv.pid}: virsh -c '{lv.uri}' ...")
            print(f"up for at most {args.duration:.0f}s; Ctrl-C to stop", flush=True)
            done.wait(args.duration)
        finally:
            if lv is not None:
                lv.stop()
    print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
