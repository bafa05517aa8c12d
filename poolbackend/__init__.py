"""poolbackend: libvirt-style iscsi-direct storage pools with an embedded iSCSI initiator."""

__version__ = "0.1.0"
