"""The set folders of one kind in a store, from a single listing: which objects each holds and
whether its manifest is there. No manifest is read, so a kind with thousands of sets (WAL: one
per 16 MB segment) costs one paginated listing per store, and two stores are diffed by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Mapping

from hms_dr.catalog import key_for
from hms_dr.manifest import MANIFEST_NAME, BackupKind

if TYPE_CHECKING:
    from hms_dr.store import Store, StoredObject


@dataclass(frozen=True)
class SetFolder:
    """One ``<cluster>/<kind>/<backup_set_id>/`` folder: its objects by file name."""

    backup_set_id: str
    objects: Mapping[str, StoredObject]

    @property
    def complete(self) -> bool:
        """A manifest is there: the set exists (its payloads are proven separately)."""
        return MANIFEST_NAME in self.objects

    @property
    def published_at(self) -> datetime:
        """When the manifest was written (else the newest object): the set's age without reading it."""
        manifest = self.objects.get(MANIFEST_NAME)
        if manifest is not None:
            return manifest.modified_at
        return max(obj.modified_at for obj in self.objects.values())

    @property
    def size_bytes(self) -> int:
        return sum(obj.size_bytes for obj in self.objects.values())


def kind_prefix(cluster: str, kind: BackupKind) -> str:
    """``<cluster>/<kind>/``, built by catalog.key_for like every other key."""
    return key_for(cluster, kind, "x")[: -len("x/")]


def read_set_folders(store: Store, cluster: str, kind: BackupKind) -> dict[str, SetFolder]:
    """Every set folder of ``kind`` in ``store``, by backup set id."""
    prefix = kind_prefix(cluster, kind)
    grouped: dict[str, dict[str, StoredObject]] = {}
    for obj in store.list(prefix):
        backup_set_id, _, name = obj.key[len(prefix):].partition("/")
        if name and "/" not in name:
            grouped.setdefault(backup_set_id, {})[name] = obj
    return {set_id: SetFolder(set_id, objects) for set_id, objects in sorted(grouped.items())}
