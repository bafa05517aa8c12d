"""Finding pools and volumes in the store without importing the initiator.

Listing commands (vol-list, vol-info, pool-info …) only read state files; keeping them free of
asyncio and the iSCSI stack keeps CLI start-up fast.

:func:`find_volume` is the one volume lookup of every command that takes a VOL argument. It
follows virsh's ``virshCommandOptVolBy`` (``tools/virsh-volume.c``) and the storage driver's
lookups, with their texts:

* with ``--pool``: the pool must exist (``failed to get pool 'P'`` + libvirt's message) and be
  active (``pool 'P' is not active``); VOL is tried as a volume name of that pool, then as a
  key, then as a path (libvirt sanitizes paths: ``a//b/`` is ``a/b``); a key or path of a
  volume of another pool is refused (``Requested volume 'V' is not in pool 'P'``);
* without ``--pool``: VOL is tried as a key, then as a path, of every active pool; a bare
  name is never searched for (``failed to get vol 'V', specifying --pool might help``);
* nothing found: ``failed to get vol 'V'`` + ``Storage volume not found: no storage vol with
  matching path 'V'`` (the path lookup's error is the last one, which virsh prints).

Two deliberate differences, both refusing where libvirt would guess: a key or path that
several active pools share (pools on one target through one host string but with different
initiator names, which the source-conflict check allows) is refused without ``--pool``
instead of resolving to whichever pool libvirt's hash table yields first; and with
``--pool P`` such a key resolves to P's volume (virsh may answer "not in pool 'P'").
"""

from __future__ import annotations

from typing import Literal

from poolbackend.errors import ConfigError, NotFoundError, PoolBackendError, StateError
from poolbackend.pool.model import Volume
from poolbackend.pool.store import PoolRecord, Store
from poolbackend.text import printable


def sanitize_path(path: str) -> str:
    """libvirt's ``virFileSanitizePath``: runs of ``/`` collapsed, no trailing ``/``.

    A leading ``//`` (not ``///``) is kept, and a URI (``scheme://…`` with no ``/`` before
    the ``://``) is left alone.
    """
    uri = path.find("://")
    if uri >= 0 and path.find("/") == uri + 1:
        return path
    out: list[str] = []
    i, n = 0, len(path)
    if path.startswith("//") and path[2:3] != "/":
        out.append("//")
        i = 2
    while i < n:
        if path[i] != "/":
            out.append(path[i])
            i += 1
            continue
        while i < n and path[i] == "/":
            i += 1
        if out and i == n:
            break
        out.append("/")
    return "".join(out)


def _volume_pool(store: Store, pool_name: str, option: str, active: bool) -> PoolRecord:
    """The pool named by ``--<option>`` (it must be ``active`` if asked), with virsh's texts."""
    if not pool_name:
        raise ConfigError(f"Failed to get option '{option}': Option argument is empty")
    try:
        record = store.get_pool(pool_name)
    except NotFoundError as exc:
        raise NotFoundError(str(exc), lead=f"failed to get pool '{printable(pool_name)}'") from None
    if active and not record.state.active:
        raise StateError(f"pool '{printable(pool_name)}' is not active")
    return record


def _active_pools(store: Store) -> list[PoolRecord]:
    """Every active pool; a pool whose files cannot be read has no volume to find."""

    def skip(_: PoolBackendError) -> None:
        return None

    return [r for r in store.list_pools(on_error=skip) if r.state.active]


def find_volume(
    store: Store,
    vol: str,
    pool_name: str | None,
    *,
    pool_option: str | None = "pool",
    any_pool: bool = False,
) -> tuple[PoolRecord, Volume]:
    """The pool and volume that VOL names, the way virsh resolves it (see the module doc).

    ``pool_option`` is the option that names the pool, for virsh's ``specifying --<option>
    might help`` (``inputpool`` for vol-create-from; ``None``: no hint, as virsh's vol-name
    and vol-pool, which have no pool option). ``any_pool`` is virsh's lookup of
    ``vol-create-as --backing-vol``: the pool may be inactive (then only keys and paths
    count) and a key or path of another pool is accepted.
    """
    if not vol:
        raise ConfigError("Failed to get option 'vol': Option argument is empty")
    wanted = None
    if pool_name is not None:
        wanted = _volume_pool(store, pool_name, pool_option or "pool", not any_pool)
    if wanted is not None:
        found = wanted.state.volume("name", vol)
        if found is not None:
            return wanted, found
    pools = _active_pools(store)
    clean = sanitize_path(vol)
    tries: tuple[tuple[Literal["key", "path"], str], ...] = (("key", vol), ("path", clean))
    for attribute, text in tries:
        matches = [(r, v) for r in pools if (v := r.state.volume(attribute, text)) is not None]
        if wanted is not None:
            for record, volume in matches:
                if record.name == wanted.name:
                    return record, volume
            if matches and not any_pool:
                raise NotFoundError(
                    f"Requested volume '{printable(vol)}' is not in pool "
                    f"'{printable(wanted.pool.name)}'"
                )
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(f"'{printable(r.pool.name)}'" for r, _ in matches)
            option = pool_option or "pool"
            raise NotFoundError(
                f"volume {attribute} '{printable(text)}' is in several pools ({names}): "
                f"name the pool with --{option}",
                lead=f"failed to get vol '{printable(vol)}', specifying --{option} might help",
            )
    shown = f"'{printable(vol)}'" + (f" ({printable(clean)})" if clean != vol else "")
    lead = f"failed to get vol '{printable(vol)}'"
    if pool_option is not None and wanted is None:
        lead += f", specifying --{pool_option} might help"
    raise NotFoundError(
        f"Storage volume not found: no storage vol with matching path {shown}", lead=lead
    )
