"""Finding pools and volumes in the store without importing the initiator.

Listing commands (vol-list, vol-info, pool-info …) only read state files; keeping them free of
asyncio and the iSCSI stack keeps CLI start-up fast.
"""

from __future__ import annotations

from poolbackend.errors import NotFoundError, StateError
from poolbackend.pool.model import Volume
from poolbackend.pool.store import PoolRecord, Store


def invalid(pool: str, what: str) -> str:
    return f"Requested operation is not valid: storage pool '{pool}' {what}"


def active_pool(store: Store, name: str) -> PoolRecord:
    record = store.get_pool(name)
    if not record.state.active:
        raise StateError(invalid(record.pool.name, "is not active"))
    return record


def find_volume(store: Store, vol: str, pool_name: str | None) -> tuple[PoolRecord, Volume]:
    """A volume by name (with a pool), or by key/path (searching every active pool)."""
    records = [active_pool(store, pool_name)] if pool_name else store.list_pools()
    for record in records:
        found = record.state.find_volume(vol)
        if found is not None:
            return record, found
    raise NotFoundError(f"Storage volume not found: no storage vol with matching path '{vol}'")
