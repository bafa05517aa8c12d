"""Sync API example (no asyncio in sight), like libiscsi's *_sync calls.

Usage: python sync_example.py iscsi://host[:port]/target-iqn/lun
"""

import sys

from poolbackend.iscsi.aio import SessionOptions
from poolbackend.iscsi.sync import SyncSession
from poolbackend.iscsi.url import parse_url


def main(url_text: str) -> None:
    url = parse_url(url_text, need_lun=True)
    assert url.lun is not None
    options = SessionOptions(initiator_name="iqn.2026-11.example:sync-example", timeout=10)
    with SyncSession.open(url.portal, None, options) as discovery:
        print("targets", [name for name, _ in discovery.send_targets()])
    with SyncSession.open(url.portal, url.target, options, url.credentials) as s:
        print("luns", s.report_luns())
        inq = s.inquiry(url.lun)
        print("lun", url.lun, inq.vendor, inq.product)
        blocks, block_size = s.read_capacity(url.lun)
        print("capacity", blocks * block_size)
        data = b"\xa5" * block_size * 4
        s.write(url.lun, 8, data, block_size)
        print("read back equal:", s.read(url.lun, 8, 4, block_size) == data)


if __name__ == "__main__":
    main(sys.argv[1])
