"""The policy's ``store:`` section: the primary and the offsite store, the Connections that reach
them, the multipart size, and whether every upload is read back."""

from __future__ import annotations

from dataclasses import dataclass

from hms_dr.errors import PolicyInvalid
from hms_dr.policy.reader import PolicyReader


@dataclass(frozen=True)
class StorePolicy:
    primary_url: str
    connection_id: str
    offsite_url: str
    offsite_connection_id: str
    part_size_mib: int
    verify_readback: bool


def parse_store(reader: PolicyReader) -> StorePolicy:
    """The ``store:`` section; the offsite store must be another place than the primary."""
    store = StorePolicy(
        primary_url=reader.store_url("store.primary_url"),
        connection_id=reader.text("store.connection_id"),
        offsite_url=reader.store_url("store.offsite_url"),
        offsite_connection_id=reader.text("store.offsite_connection_id"),
        part_size_mib=reader.integer("store.part_size_mib", minimum=5, maximum=5120),
        verify_readback=reader.boolean("store.verify_readback"),
    )
    if store.primary_url.rstrip("/") == store.offsite_url.rstrip("/"):
        raise PolicyInvalid(f"{reader.source}: store.offsite_url must differ from store.primary_url")
    return store
