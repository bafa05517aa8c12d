"""Async API example: discovery, login, REPORT LUNS, INQUIRY, READ CAPACITY, write, read.

Usage: python async_example.py iscsi://host[:port]/target-iqn/lun
"""

import asyncio
import sys

from poolbackend.iscsi.aio import Session, SessionOptions
from poolbackend.iscsi.url import parse_url


async def main(url_text: str) -> None:
    url = parse_url(url_text, need_lun=True)
    options = SessionOptions(initiator_name="iqn.2026-11.example:async-example", timeout=10)

    # Discovery session: SendTargets=All (replies split over several PDUs are reassembled).
    async with await Session.open(url.portal, None, options) as discovery:
        for name, addresses in await discovery.send_targets():
            print("target", name, addresses)

    # Normal session: commands issued concurrently are pipelined up to the target's window.
    async with await Session.open(url.portal, url.target, options, url.credentials) as s:
        luns = await s.report_luns()
        print("luns", luns)
        inquiries = await asyncio.gather(*(s.inquiry(lun) for lun in luns))
        for lun, inq in zip(luns, inquiries, strict=True):
            print("lun", lun, inq.vendor, inq.product, "type", inq.device_type)
        assert url.lun is not None
        blocks, block_size = await s.read_capacity(url.lun)
        print("capacity", blocks * block_size, "block size", block_size)
        data = bytes(range(256)) * (block_size // 256) * 8
        await s.write(url.lun, 0, data, block_size)
        back = await s.read(url.lun, 0, len(data) // block_size, block_size)
        print("read back equal:", bytes(back) == data)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
