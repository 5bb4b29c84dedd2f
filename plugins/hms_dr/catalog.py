"""The catalog: every backup set in one store, read from the manifests themselves, and the one
module that knows the store's folder layout.

There is no second source of truth to drift: a set exists exactly when its folder holds a
readable manifest. Folders without one are the leftovers of interrupted runs ("orphans"); they
are never listed as sets, never restored, and retention removes them.

The layout: ``<cluster>/<kind>/<backup_set_id>/<file>`` for every set (``key_for``),
``<cluster>/audit/<day>/<record>.json`` for the DR audit trail (``audit_key``), and probe objects
under ``<cluster>/.preflight`` (``preflight_prefix``). Keys are built here and nowhere else.
``read_set_folders`` reads a kind's set folders from one listing, without reading a manifest
(thousands of WAL sets, or two stores diffed by name).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from hms_dr.errors import ManifestInvalid, NoBackupForTarget, ObjectMissing, RequestRefused, SetNotFound
from hms_dr.manifest import MANIFEST_NAME, BackupKind, Manifest, parse_manifest

if TYPE_CHECKING:
    from hms_dr.store import Store, StoredObject

log = logging.getLogger(__name__)


AUDIT_FOLDER = "audit"


def key_for(cluster: str, kind: BackupKind, backup_set_id: str, name: str = "") -> str:
    """<cluster>/<kind>/<backup_set_id>/<name>; with no name, the set's folder (ending in '/')."""
    return f"{kind_prefix(cluster, kind)}{backup_set_id}/{name}"


def cluster_prefix(cluster: str) -> str:
    """<cluster>/: everything hms-dr stores for one cluster."""
    return f"{cluster}/"


def kind_prefix(cluster: str, kind: BackupKind) -> str:
    """<cluster>/<kind>/: the folder of every set of one kind."""
    return f"{cluster_prefix(cluster)}{kind.value}/"


def preflight_prefix(cluster: str) -> str:
    """Where a preflight writes, reads back and deletes its probe object."""
    return f"{cluster_prefix(cluster)}.preflight"


def audit_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}{AUDIT_FOLDER}/"


def audit_key(cluster: str, day: str, name: str) -> str:
    """<cluster>/audit/<day>/<name>.json: a listing reads as a timeline."""
    return f"{audit_prefix(cluster)}{day}/{name}.json"


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
    def newest_at(self) -> datetime:
        """When its newest object was written."""
        return max(obj.modified_at for obj in self.objects.values())

    @property
    def size_bytes(self) -> int:
        return sum(obj.size_bytes for obj in self.objects.values())


def read_set_folders(store: Store, cluster: str, kind: BackupKind) -> dict[str, SetFolder]:
    """Every set folder of ``kind`` in ``store``, by backup set id, from one listing."""
    prefix = kind_prefix(cluster, kind)
    grouped: dict[str, dict[str, StoredObject]] = {}
    for obj in store.list(prefix):
        backup_set_id, _, name = obj.key[len(prefix) :].partition("/")
        if name and "/" not in name:
            grouped.setdefault(backup_set_id, {})[name] = obj
    return {set_id: SetFolder(set_id, objects) for set_id, objects in sorted(grouped.items())}


@dataclass(frozen=True)
class BackupSet:
    """A complete set as the catalog knows it: its manifest and where that manifest lies."""

    manifest: Manifest
    manifest_key: str

    @property
    def backup_set_id(self) -> str:
        return self.manifest.backup_set_id

    @property
    def kind(self) -> BackupKind:
        return self.manifest.kind

    @property
    def finished_at(self) -> datetime:
        return self.manifest.finished_at

    @property
    def size_bytes(self) -> int:
        return self.manifest.size_bytes


@dataclass(frozen=True)
class OrphanFolder:
    """Objects of one set folder that has no manifest: an interrupted or failed run."""

    kind: BackupKind
    backup_set_id: str
    keys: tuple[str, ...]
    newest_modified_at: datetime


@dataclass(frozen=True)
class CatalogListing:
    sets: tuple[BackupSet, ...]  # oldest first
    orphans: tuple[OrphanFolder, ...]
    unreadable: tuple[str, ...]  # manifest keys that did not parse: reported, never deleted


def list_catalog(store: Store, cluster: str, kind: BackupKind) -> CatalogListing:
    """Read every manifest of one kind; folders without a manifest come back as orphans."""
    prefix = f"{cluster}/{kind.value}/"
    folders: dict[str, list] = {}
    for obj in store.list(prefix):
        rest = obj.key[len(prefix) :]
        backup_set_id, _, name = rest.partition("/")
        if not name:
            continue
        folders.setdefault(backup_set_id, []).append(obj)

    sets: list[BackupSet] = []
    orphans: list[OrphanFolder] = []
    unreadable: list[str] = []
    for backup_set_id, objects in sorted(folders.items()):
        manifest_key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
        if any(obj.key == manifest_key for obj in objects):
            try:
                manifest = parse_manifest(store.get_bytes(manifest_key), where=store.describe(manifest_key))
            except ManifestInvalid as exc:
                log.warning("unreadable manifest, set ignored: %s", exc)
                unreadable.append(manifest_key)
                continue
            if manifest.backup_set_id != backup_set_id or manifest.kind is not kind:
                log.warning(
                    "manifest %s describes %s/%s: ignored", manifest_key, manifest.kind.value, manifest.backup_set_id
                )
                unreadable.append(manifest_key)
                continue
            sets.append(BackupSet(manifest=manifest, manifest_key=manifest_key))
        else:
            orphans.append(
                OrphanFolder(
                    kind=kind,
                    backup_set_id=backup_set_id,
                    keys=tuple(sorted(obj.key for obj in objects)),
                    newest_modified_at=max(obj.modified_at for obj in objects),
                )
            )
    sets.sort(key=lambda s: (s.finished_at, s.backup_set_id))
    return CatalogListing(sets=tuple(sets), orphans=tuple(orphans), unreadable=tuple(unreadable))


MAX_IDS_LISTED = 10


def find_set(store: Store, cluster: str, kind: BackupKind, backup_set_id: str) -> BackupSet:
    """The set with this id, or "latest" for the newest complete one. SetNotFound, for an id the
    store lacks, names the newest ids of that kind it holds, so the operator can pick one."""
    if backup_set_id == "latest":
        listing = list_catalog(store, cluster, kind)
        if not listing.sets:
            raise NoBackupForTarget(
                f"no complete {kind.value} backup set in {store.describe(f'{cluster}/{kind.value}/')}"
            )
        return listing.sets[-1]
    manifest_key = key_for(cluster, kind, backup_set_id, MANIFEST_NAME)
    try:
        raw = store.get_bytes(manifest_key)
    except ObjectMissing:
        raise SetNotFound(
            f"no complete {kind.value} backup set {backup_set_id} in {store.describe(key_for(cluster, kind, backup_set_id))}"
            f"; {describe_ids(newest_set_ids(store, cluster, kind), kind)}",
            kind=kind.value,
            backup_set_id=backup_set_id,
        ) from None
    return BackupSet(manifest=parse_manifest(raw, where=store.describe(manifest_key)), manifest_key=manifest_key)


def find_requested_set(store: Store, cluster: str, kind: BackupKind, backup_set_id: str) -> BackupSet:
    """find_set for an id an operator typed into a run's params: an id the store lacks is the
    request's fault (RequestRefused: the run fails without paging), while "latest" with no set at
    all, or a store that cannot be read, stays a failure of the system."""
    try:
        return find_set(store, cluster, kind, backup_set_id)
    except SetNotFound as exc:
        raise RequestRefused(exc.message, hint=exc.hint) from None


def newest_set_ids(store: Store, cluster: str, kind: BackupKind, limit: int = MAX_IDS_LISTED) -> list[str]:
    """The ids of the newest ``limit`` sets of ``kind`` that have a manifest, newest first, from one
    listing (no manifest is read: ids are UTC timestamps, or WAL file names, so they sort by age)."""
    prefix = f"{cluster}/{kind.value}/"
    ids = {
        obj.key[len(prefix) :].partition("/")[0] for obj in store.list(prefix) if obj.key.endswith(f"/{MANIFEST_NAME}")
    }
    return sorted(ids, reverse=True)[:limit]


def describe_ids(ids: list[str], kind: BackupKind) -> str:
    if not ids:
        return f"the store holds no complete {kind.value} set"
    return f"the newest {kind.value} set{'s' if len(ids) > 1 else ''}: {', '.join(ids)}"
