"""Pool, volume, secret and discovery XML: parsing, validation and libvirt-identical output.

Every parser runs the same four stages, each in its own module:

1. :mod:`.safe`: safe loading (UTF-8 only, no DTDs or entities, bounded size);
2. :mod:`.libvirt_checks`: libvirt's C parser checks, in libvirt's order and with libvirt
   9.0's exact messages;
3. :mod:`.explain`: RELAX NG validation against ``poolbackend/schemas``, a failure explained
   as one line naming the file, line, element and problem;
4. poolbackend's own checks, in the parser of each document type: :mod:`.pool` (pool and
   find-storage-pool-sources XML), :mod:`.volume`, :mod:`.secret`.

All failures raise :class:`~poolbackend.pool.xml.safe.XMLConfigError` (a
:class:`~poolbackend.errors.ConfigError`) whose ``str()`` is one line. The runtime state file
is not XML (:mod:`poolbackend.pool.statefile`).
"""
