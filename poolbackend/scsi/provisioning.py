"""A LUN's logical block provisioning facts, from READ CAPACITY(16) and VPD 0xB0/0xB2.

LBPME (thin: GET LBA STATUS, UNMAP and WRITE SAME with UNMAP make sense) and LBPRZ
(deallocated blocks read as zeros) come from READ CAPACITY(16); LBPU, LBPWS, LBPWS10 and the
provisioning type from VPD 0xB2; the UNMAP limits and granularity from VPD 0xB0. A LUN
without a page has the page's facts as 0 (what SBC says a device without it supports).
"""

from __future__ import annotations

from dataclasses import dataclass

from poolbackend.scsi.capacity import ReadCapacity16
from poolbackend.scsi.vpd import BlockLimits, LogicalBlockProvisioning

PROVISIONING_TYPES = {0: "full", 1: "resource", 2: "thin"}


def provisioning_type_name(code: int) -> str:
    """SBC-4's name of a VPD 0xB2 provisioning type (3-7 are reserved)."""
    return PROVISIONING_TYPES.get(code, f"reserved ({code})")


@dataclass(frozen=True)
class Provisioning:
    """LBPME/LBPRZ and the two pages as the LUN answered them (None: not reported)."""

    lbpme: bool = False
    lbprz: bool = False
    limits: BlockLimits | None = None  # VPD 0xB0
    lbp: LogicalBlockProvisioning | None = None  # VPD 0xB2

    @property
    def thin(self) -> bool:
        return self.lbpme

    @property
    def lbpu(self) -> bool:
        return self.lbp is not None and self.lbp.lbpu

    @property
    def lbpws(self) -> bool:
        return self.lbp is not None and self.lbp.lbpws

    @property
    def lbpws10(self) -> bool:
        return self.lbp is not None and self.lbp.lbpws10

    @property
    def provisioning_type(self) -> int:
        return 0 if self.lbp is None else self.lbp.provisioning_type

    @property
    def granularity(self) -> int:
        """Blocks the target deallocates at once (at least 1)."""
        return max(1, 0 if self.limits is None else self.limits.opt_unmap_granularity)

    def lines(self) -> list[tuple[str, str]]:
        """Labelled lines for ``vol-info --scsi``."""

        def yn(flag: bool) -> str:
            return "yes" if flag else "no"

        def limit(n: int) -> str:
            return "unlimited" if n == 0xFFFFFFFF else str(n)

        pairs = [
            ("Thin provisioning (LBPME):", yn(self.lbpme)),
            ("Reads zeros unmapped (LBPRZ):", yn(self.lbprz)),
        ]
        if self.lbp is not None:
            pairs += [
                ("Provisioning type:", provisioning_type_name(self.lbp.provisioning_type)),
                ("UNMAP (LBPU):", yn(self.lbp.lbpu)),
                ("WRITE SAME(16) UNMAP (LBPWS):", yn(self.lbp.lbpws)),
                ("WRITE SAME(10) UNMAP (LBPWS10):", yn(self.lbp.lbpws10)),
            ]
        else:
            pairs.append(("Provisioning type:", "not reported (no VPD page 0xB2)"))
        bl = self.limits
        if bl is not None:
            gran = str(bl.opt_unmap_granularity) if bl.opt_unmap_granularity else "-"
            if bl.ugavalid:
                gran += f" (alignment {bl.unmap_granularity_alignment})"
            pairs += [
                ("Max UNMAP LBA count:", limit(bl.max_unmap_lba_count)),
                ("Max UNMAP descriptors:", limit(bl.max_unmap_descriptors)),
                ("UNMAP granularity:", gran),
                ("Max WRITE SAME length:", str(bl.max_write_same_length)),
            ]
        return pairs


def provisioning(
    rc16: ReadCapacity16 | None,
    limits: BlockLimits | None,
    lbp: LogicalBlockProvisioning | None,
) -> Provisioning:
    """Combine what the LUN answered (None: it did not answer that command or page)."""
    if rc16 is None:
        return Provisioning(limits=limits, lbp=lbp)
    return Provisioning(rc16.lbpme, rc16.lbprz, limits, lbp)
