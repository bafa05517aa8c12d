"""SCSI layer: CDB builders and data-in parsers, independent of the iSCSI transport.

CDB builders live in the :mod:`~poolbackend.scsi.cdb` namespace (``cdb.inquiry(...)``,
``cdb.read16(...)``; ``inquiry`` is also a module name here), return ``bytes`` and raise
ValueError for out-of-range arguments. Parsers take the data-in ``bytes`` and return frozen
dataclasses, raising only :class:`ScsiParseError` (:func:`parse_sense` never raises).
"""

from poolbackend.scsi import cdb
from poolbackend.scsi.capacity import (
    ReadCapacity10,
    ReadCapacity16,
    parse_read_capacity10,
    parse_read_capacity16,
)
from poolbackend.scsi.cdb import SA_READ_CAPACITY_16, Opcode, cdb_name
from poolbackend.scsi.errors import ScsiParseError, UnsupportedLunFormat
from poolbackend.scsi.inquiry import (
    StandardInquiry,
    device_type_name,
    parse_standard_inquiry,
    peripheral_qualifier_name,
    version_descriptor_name,
    version_name,
)
from poolbackend.scsi.lun import MAX_LUN, Lun, LunRef, decode_lun, encode_lun, lun_field
from poolbackend.scsi.reportluns import ReportLuns, build_report_luns_data, parse_report_luns
from poolbackend.scsi.sense import (
    RetryClass,
    SenseData,
    SenseKey,
    asc_name,
    is_unit_attention,
    parse_sense,
    retry_class,
    sense_key_name,
)
from poolbackend.scsi.status import ScsiStatus, status_name
from poolbackend.scsi.vpd import (
    PAGE_BLOCK_CHARACTERISTICS,
    PAGE_BLOCK_LIMITS,
    PAGE_DEVICE_ID,
    PAGE_PROVISIONING,
    PAGE_SUPPORTED,
    PAGE_UNIT_SERIAL,
    BlockDeviceCharacteristics,
    BlockLimits,
    Designator,
    DeviceIdentification,
    LogicalBlockProvisioning,
    SupportedPages,
    UnitSerialNumber,
    parse_block_device_characteristics,
    parse_block_limits,
    parse_device_identification,
    parse_logical_block_provisioning,
    parse_supported_pages,
    parse_unit_serial,
    preferred_identifier,
    vpd_full_length,
)

__all__ = [
    "MAX_LUN",
    "PAGE_BLOCK_CHARACTERISTICS",
    "PAGE_BLOCK_LIMITS",
    "PAGE_DEVICE_ID",
    "PAGE_PROVISIONING",
    "PAGE_SUPPORTED",
    "PAGE_UNIT_SERIAL",
    "SA_READ_CAPACITY_16",
    "BlockDeviceCharacteristics",
    "BlockLimits",
    "Designator",
    "DeviceIdentification",
    "LogicalBlockProvisioning",
    "Lun",
    "LunRef",
    "Opcode",
    "ReadCapacity10",
    "ReadCapacity16",
    "ReportLuns",
    "RetryClass",
    "ScsiParseError",
    "ScsiStatus",
    "SenseData",
    "SenseKey",
    "StandardInquiry",
    "SupportedPages",
    "UnitSerialNumber",
    "UnsupportedLunFormat",
    "asc_name",
    "build_report_luns_data",
    "cdb",
    "cdb_name",
    "decode_lun",
    "device_type_name",
    "encode_lun",
    "is_unit_attention",
    "lun_field",
    "parse_block_device_characteristics",
    "parse_block_limits",
    "parse_device_identification",
    "parse_logical_block_provisioning",
    "parse_read_capacity10",
    "parse_read_capacity16",
    "parse_report_luns",
    "parse_sense",
    "parse_standard_inquiry",
    "parse_supported_pages",
    "parse_unit_serial",
    "peripheral_qualifier_name",
    "preferred_identifier",
    "retry_class",
    "sense_key_name",
    "status_name",
    "version_descriptor_name",
    "version_name",
    "vpd_full_length",
]
