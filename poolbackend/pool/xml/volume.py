"""Volume XML: ``vol-dumpxml`` output, ``vol-create-as --print-xml`` output and the parser
that gives libvirt's refusals for ``vol-create``."""

from __future__ import annotations

from poolbackend.pool.model import Volume, VolumeSpec
from poolbackend.pool.naming import printable
from poolbackend.pool.xml.explain import VOLUME_SPEC, check_schema
from poolbackend.pool.xml.libvirt_checks import c_ull, check_root, libvirt_error, scale_integer
from poolbackend.pool.xml.safe import esc, load_xml, xstr


def format_volume_xml(volume: Volume) -> str:
    """Return the volume XML as ``virsh vol-dumpxml`` prints it for an iscsi-direct pool."""
    lines = [
        "<volume type='network'>",
        f"  <name>{esc(volume.name)}</name>",
        f"  <key>{esc(volume.key)}</key>",
        f"  <capacity unit='bytes'>{volume.capacity}</capacity>",
        f"  <allocation unit='bytes'>{volume.allocation}</allocation>",
        "  <target>",
        f"    <path>{esc(volume.path)}</path>",
        "  </target>",
        "</volume>",
    ]
    return "\n".join(lines) + "\n"


def format_volume_request_xml(
    name: str,
    capacity: int,
    allocation: int | None,
    file_format: str | None,
    backing_path: str | None,
    backing_format: str | None,
) -> str:
    """The volume XML ``virsh vol-create-as --print-xml`` prints (values escaped)."""
    lines = ["<volume>", f"  <name>{esc(name)}</name>", f"  <capacity>{capacity}</capacity>"]
    if allocation is not None:
        lines.append(f"  <allocation>{allocation}</allocation>")
    if file_format:
        lines += ["  <target>", f"    <format type='{esc(file_format)}'/>", "  </target>"]
    if backing_path is not None:
        lines += ["  <backingStore>", f"    <path>{esc(backing_path)}</path>"]
        if backing_format:
            lines.append(f"    <format type='{esc(backing_format)}'/>")
        lines.append("  </backingStore>")
    return "\n".join([*lines, "</volume>"]) + "\n"


# ---------------------------------------------------------------------------- volume XML


def parse_volume_xml(
    text: bytes | str,
    *,
    source_name: str = "<file>",
    capacity_optional: bool = False,
    validate: bool = True,
) -> VolumeSpec:
    """Parse a volume-creation XML (``vol-create``) far enough to report libvirt's refusals.

    libvirt's checks and messages come first (``XML error: missing volume name element``,
    ``XML error: missing capacity element``, ``XML error: malformed capacity element``, size
    unit errors), then the schema ``storagevol.rng``. ``capacity_optional``: libvirt's
    VIR_VOL_XML_PARSE_OPT_CAPACITY (vol-create), where a missing capacity means 0;
    ``validate=False``: no schema check, like libvirt without ``--validate``.
    """
    kind = "volume"
    root = load_xml(text, kind, source_name)
    check_root(root, "volume", source_name)
    name = xstr(root, "./name")
    if not name:
        raise libvirt_error("XML error: missing volume name element", root, source_name)
    vol_type = root.get("type")
    if vol_type is not None and vol_type not in ("file", "block", "dir", "network", "netdir"):
        raise libvirt_error(
            f"unsupported configuration: unknown volume type '{printable(vol_type)}'",
            root,
            source_name,
        )
    sizes: list[int | None] = []
    for element_name in ("capacity", "allocation"):
        value = xstr(root, f"./{element_name}")
        if not value:
            if element_name == "capacity" and not capacity_optional:
                raise libvirt_error("XML error: missing capacity element", root, source_name)
            sizes.append(None)
            continue
        number = c_ull(value)
        if number is None:
            # libvirt 9.0 reports a bad allocation with the capacity message too
            raise libvirt_error(
                "XML error: malformed capacity element", root.find(element_name), source_name
            )
        unit = xstr(root, f"./{element_name}/@unit") or None
        sizes.append(scale_integer(number, unit))
    if validate:
        check_schema(root, "storagevol.rng", VOLUME_SPEC, "volume", kind, source_name)
    return VolumeSpec(name=name, capacity=sizes[0], allocation=sizes[1])
