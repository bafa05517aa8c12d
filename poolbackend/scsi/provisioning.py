"""A LUN's logical block provisioning facts, from READ CAPACITY(16) and VPD 0xB0/0xB2.

LBPME (thin: GET LBA STATUS, UNMAP and WRITE SAME with UNMAP make sense) and LBPRZ
(deallocated blocks read as zeros) come from READ CAPACITY(16); LBPU, LBPWS, LBPWS10 and the
provisioning type from VPD 0xB2; the UNMAP limits and granularity from VPD 0xB0. A LUN
without a page has the page's facts as 0 (what SBC says a device without it supports).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from poolbackend.scsi.capacity import ReadCapacity16
from poolbackend.scsi.vpd import BlockLimits, LogicalBlockProvisioning

PROVISIONING_TYPES = {0: "full", 1: "resource", 2: "thin"}


def provisioning_type_name(code: int) -> str:
    """SBC-4's name of a VPD 0xB2 provisioning type (3-7 are reserved)."""
    return PROVISIONING_TYPES.get(code, f"reserved ({code})")


@dataclass(frozen=True)
class Provisioning:
    lbpme: bool = False
    lbprz: bool = False
    lbpu: bool = False
    lbpws: bool = False
    lbpws10: bool = False
    anc_sup: bool = False
    provisioning_type: int = 0
    max_unmap_lba_count: int = 0
    max_unmap_descriptors: int = 0
    opt_unmap_granularity: int = 0  # blocks; 0 = not reported
    ugavalid: bool = False
    unmap_granularity_alignment: int = 0
    max_write_same_length: int = 0
    has_b0: bool = False
    has_b2: bool = False

    @property
    def thin(self) -> bool:
        return self.lbpme

    @property
    def granularity(self) -> int:
        """Blocks the target deallocates at once (at least 1)."""
        return max(1, self.opt_unmap_granularity)

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
        if self.has_b2:
            pairs += [
                ("Provisioning type:", provisioning_type_name(self.provisioning_type)),
                ("UNMAP (LBPU):", yn(self.lbpu)),
                ("WRITE SAME(16) UNMAP (LBPWS):", yn(self.lbpws)),
                ("WRITE SAME(10) UNMAP (LBPWS10):", yn(self.lbpws10)),
            ]
        else:
            pairs.append(("Provisioning type:", "not reported (no VPD page 0xB2)"))
        if self.has_b0:
            gran = str(self.opt_unmap_granularity) if self.opt_unmap_granularity else "-"
            if self.ugavalid:
                gran += f" (alignment {self.unmap_granularity_alignment})"
            pairs += [
                ("Max UNMAP LBA count:", limit(self.max_unmap_lba_count)),
                ("Max UNMAP descriptors:", limit(self.max_unmap_descriptors)),
                ("UNMAP granularity:", gran),
                ("Max WRITE SAME length:", str(self.max_write_same_length)),
            ]
        return pairs


def provisioning(
    rc16: ReadCapacity16 | None,
    limits: BlockLimits | None,
    lbp: LogicalBlockProvisioning | None,
) -> Provisioning:
    """Combine what the LUN answered (None: it did not answer that command or page)."""
    out = Provisioning()
    if rc16 is not None:
        out = replace(out, lbpme=rc16.lbpme, lbprz=rc16.lbprz)
    if lbp is not None:
        out = replace(
            out,
            has_b2=True,
            lbpu=lbp.lbpu,
            lbpws=lbp.lbpws,
            lbpws10=lbp.lbpws10,
            anc_sup=lbp.anc_sup,
            provisioning_type=lbp.provisioning_type,
        )
    if limits is not None:
        out = replace(
            out,
            has_b0=True,
            max_unmap_lba_count=limits.max_unmap_lba_count,
            max_unmap_descriptors=limits.max_unmap_descriptors,
            opt_unmap_granularity=limits.opt_unmap_granularity,
            ugavalid=limits.ugavalid,
            unmap_granularity_alignment=limits.unmap_granularity_alignment,
            max_write_same_length=limits.max_write_same_length,
        )
    return out
