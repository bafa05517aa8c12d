"""poolbackend: a libvirt-style iscsi-direct storage pool with an embedded userspace iSCSI initiator."""

__version__ = "0.1.0"
