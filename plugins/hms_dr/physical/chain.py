"""Chains of incremental base backups: which sets an incremental needs, and refusing a chain that
cannot be restored. Pure decisions over manifest records: no store, clock or server is read here.

PostgreSQL 17+ takes an incremental base backup against the backup_manifest of an earlier one
(its parent); restoring it takes ``pg_combinebackup full inc1 ... tip -o datadir``, with every
link from the full backup to the tip, oldest first. One missing, foreign or mixed-up link and the
tip cannot be restored, so the backup side (which set to take the next incremental against), the
restore side (which sets to combine) and retention (which sets must stay together) all read a
chain through this one module.

The manifest's ``base_backup`` section records, for every base set:

- ``"backup_type"``: ``"full"`` or ``"incremental"``; a missing field means ``"full"`` (every
  set written before incrementals existed).
- ``"parent_backup_set_id"``: the set id of the parent, the set whose PostgreSQL backup_manifest
  the incremental was taken against; only for incrementals.
- ``"chain"``: the set ids from the full backup to the parent, oldest first (e.g.
  ``["20261201T030000Z", "20261202T030000Z"]`` for the second incremental); only for
  incrementals; its last element equals ``parent_backup_set_id``.
- ``"system_identifier"`` (written for every base set): every link of a chain has the same one.

The chain is recorded whole in each incremental (not only its parent) so that a tampered or
mixed-up manifest shows as a disagreement between a child and its parent, and so that retention
can tell what a kept set needs even when a link has gone missing.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

from hms_dr.catalog import BackupSet
from hms_dr.errors import BackupChainBroken, ManifestInvalid
from hms_dr.manifest import BackupKind

BACKUP_TYPE_FIELD = "backup_type"
PARENT_FIELD = "parent_backup_set_id"
CHAIN_FIELD = "chain"
SYSTEM_IDENTIFIER_FIELD = "system_identifier"

# What to do about a broken chain is the same whichever link broke: the tip cannot be restored.
BROKEN_CHAIN_HINT = (
    "restore from another base backup set (a full one, or an incremental whose chain is whole), "
    "and take a new full base backup so that later incrementals start a whole chain"
)


class BackupType(StrEnum):
    """A base set's ``backup_type``: a full backup stands alone, an incremental needs its chain."""

    FULL = "full"
    INCREMENTAL = "incremental"


@dataclass(frozen=True)
class ChainLink:
    """The chain fields of one base set, checked on their own (not yet against the other sets)."""

    backup_set: BackupSet
    backup_type: BackupType
    parent_backup_set_id: str | None  # None for a full backup
    chain: tuple[str, ...]  # full to parent, oldest first; () for a full backup
    system_identifier: str  # "" when the manifest does not say

    @property
    def backup_set_id(self) -> str:
        return self.backup_set.backup_set_id

    @property
    def finished_at(self) -> datetime:
        return self.backup_set.finished_at

    @property
    def is_incremental(self) -> bool:
        return self.backup_type is BackupType.INCREMENTAL

    @property
    def full_backup_set_id(self) -> str:
        """The full backup this set's chain starts from (itself, for a full backup)."""
        return self.chain[0] if self.chain else self.backup_set_id

    @property
    def lineage(self) -> tuple[str, ...]:
        """The chain a child of this set records: this set's chain, then this set."""
        return (*self.chain, self.backup_set_id)


def chain_link_of(backup_set: BackupSet) -> ChainLink:
    """The chain fields of a base set's manifest; a set without them is a full backup (every set
    written before incrementals). ManifestInvalid when the fields contradict each other."""
    where = f"base backup set {backup_set.backup_set_id}"
    if backup_set.kind is not BackupKind.BASE:
        raise ManifestInvalid(f"backup set {backup_set.kind.value}/{backup_set.backup_set_id} is not a base backup")
    section = backup_set.manifest.body.get("base_backup")
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ManifestInvalid(f"{where} has a base_backup section that is not an object")
    system_identifier = str(section.get(SYSTEM_IDENTIFIER_FIELD) or "")
    raw_type = section.get(BACKUP_TYPE_FIELD, BackupType.FULL.value)
    try:
        backup_type = BackupType(raw_type)
    except ValueError:
        raise ManifestInvalid(
            f"{where} has backup_type {raw_type!r}; expected {BackupType.FULL.value!r} or {BackupType.INCREMENTAL.value!r}"
        ) from None
    parent = section.get(PARENT_FIELD)
    chain = section.get(CHAIN_FIELD)
    if backup_type is BackupType.FULL:
        # A full backup that names a parent is a mixed-up manifest: refuse rather than pick one reading.
        if parent is not None or chain is not None:
            raise ManifestInvalid(f"{where} is a full backup but names a parent or a chain")
        return ChainLink(backup_set, backup_type, None, (), system_identifier)
    if not isinstance(parent, str) or not parent:
        raise ManifestInvalid(f"{where} is an incremental backup without a parent_backup_set_id")
    if not isinstance(chain, list) or not chain or not all(isinstance(i, str) and i for i in chain):
        raise ManifestInvalid(f"{where} is an incremental backup without a chain (a list of set ids, full first)")
    if chain[-1] != parent:
        raise ManifestInvalid(f"{where} records parent {parent} but its chain ends with {chain[-1]}")
    if len(set(chain)) != len(chain) or backup_set.backup_set_id in chain:
        raise ManifestInvalid(f"{where} records a chain that names a set twice: {', '.join(chain)}")
    return ChainLink(backup_set, backup_type, parent, tuple(chain), system_identifier)


@dataclass(frozen=True)
class BackupChain:
    """The sets a base backup is restored from, full first and the tip last: one set for a full
    backup; for an incremental, its full backup, every incremental between, and itself (the
    order ``pg_combinebackup`` takes them in). Only :func:`resolve_chain` builds one, so every
    chain is whole: each link present, of the same cluster, older than the next, and recording
    the chain its parent does."""

    links: tuple[ChainLink, ...]

    def __post_init__(self) -> None:
        if not self.links:
            raise ValueError("a backup chain has at least its full backup")

    @property
    def sets(self) -> tuple[BackupSet, ...]:
        return tuple(link.backup_set for link in self.links)

    @property
    def full(self) -> BackupSet:
        return self.links[0].backup_set

    @property
    def tip(self) -> BackupSet:
        return self.links[-1].backup_set

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(link.backup_set_id for link in self.links)

    @property
    def is_incremental(self) -> bool:
        """The tip is an incremental (restoring it combines more than one set)."""
        return len(self.links) > 1

    @property
    def system_identifier(self) -> str:
        return self.links[0].system_identifier


def resolve_chain(tip: BackupSet, sets_by_id: Mapping[str, BackupSet]) -> BackupChain:
    """The whole chain of ``tip`` among ``sets_by_id`` (set id -> base set, e.g. one catalog
    listing): BackupChainBroken for a missing link, a link of another cluster, a link whose own
    chain disagrees with what its child records, a parent not older than its child, or a cycle;
    ManifestInvalid when a link's chain fields cannot be read."""
    tip_link = chain_link_of(tip)
    tip_id = tip_link.backup_set_id
    # First walk the parents alone, so that a loop or a hole is named as such, then check each
    # parent against its child.
    newest_first = [tip_link]
    seen = {tip_id}
    while newest_first[-1].parent_backup_set_id is not None:
        child = newest_first[-1]
        parent_id = child.parent_backup_set_id
        assert parent_id is not None
        if parent_id in seen:
            raise BackupChainBroken(
                f"the chain of incremental base backup set {tip_id} loops: set {child.backup_set_id} names "
                f"{parent_id} as its parent, which already descends from it",
                tip_backup_set_id=tip_id,
                hint=BROKEN_CHAIN_HINT,
            )
        parent = sets_by_id.get(parent_id)
        if parent is None:
            raise BackupChainBroken(
                f"base backup set {parent_id}, a link of the chain of incremental base backup set {tip_id}, "
                f"is not in the store: {tip_id} cannot be restored",
                tip_backup_set_id=tip_id,
                missing_backup_set_id=parent_id,
                hint=BROKEN_CHAIN_HINT,
            )
        seen.add(parent_id)
        newest_first.append(chain_link_of(parent))
    for child_link, parent_link in pairwise(newest_first):
        _refuse_link(tip_id, child_link, parent_link)
    return BackupChain(tuple(reversed(newest_first)))


def _refuse_link(tip_id: str, child: ChainLink, parent: ChainLink) -> None:
    """BackupChainBroken when ``parent`` cannot be the parent ``child`` records."""
    where = f"in the chain of incremental base backup set {tip_id}"
    if parent.system_identifier != child.system_identifier:
        raise BackupChainBroken(
            f"{where}, set {child.backup_set_id} (system identifier {child.system_identifier or 'unknown'}) "
            f"names {parent.backup_set_id} (system identifier {parent.system_identifier or 'unknown'}) as its "
            "parent: they come from different clusters",
            tip_backup_set_id=tip_id,
            hint=BROKEN_CHAIN_HINT,
        )
    if not parent.finished_at < child.finished_at:
        raise BackupChainBroken(
            f"{where}, parent {parent.backup_set_id} (finished {parent.finished_at:%Y-%m-%d %H:%M:%S} UTC) is not "
            f"older than its child {child.backup_set_id} (finished {child.finished_at:%Y-%m-%d %H:%M:%S} UTC)",
            tip_backup_set_id=tip_id,
            hint=BROKEN_CHAIN_HINT,
        )
    if child.chain != parent.lineage:
        raise BackupChainBroken(
            f"{where}, set {child.backup_set_id} records the chain {', '.join(child.chain)} but the chain its "
            f"parent {parent.backup_set_id} records leads to {', '.join(parent.lineage)}: a tampered or mixed-up manifest",
            tip_backup_set_id=tip_id,
            hint=BROKEN_CHAIN_HINT,
        )


def full_backup_fields() -> dict[str, Any]:
    """The chain fields of a new full backup's ``base_backup`` section."""
    return {BACKUP_TYPE_FIELD: BackupType.FULL.value}


def chain_fields_for_child(parent: BackupSet) -> dict[str, Any]:
    """The chain fields of a new incremental taken against ``parent``'s backup_manifest (to merge
    into its ``base_backup`` section): a full parent starts the chain ``[parent]``, an incremental
    parent passes on its own chain plus itself. The caller resolves ``parent``'s chain first (an
    incremental on a broken chain cannot be restored either) and checks that the server's system
    identifier is the parent's (``chain_link_of(parent).system_identifier``)."""
    link = chain_link_of(parent)
    return {
        BACKUP_TYPE_FIELD: BackupType.INCREMENTAL.value,
        PARENT_FIELD: link.backup_set_id,
        CHAIN_FIELD: list(link.lineage),
    }


def descendants_of(backup_set_id: str, links: Iterable[ChainLink]) -> tuple[str, ...]:
    """The sets among ``links`` whose restore needs ``backup_set_id``: those whose recorded chain
    names it, or whose parents lead to it; oldest first."""
    by_id = {link.backup_set_id: link for link in links}
    found = []
    for link in by_id.values():
        if backup_set_id in link.chain or backup_set_id in _parent_walk(link, by_id):
            found.append(link)
    found.sort(key=lambda link: (link.finished_at, link.backup_set_id))
    return tuple(link.backup_set_id for link in found)


def ancestors_of(link: ChainLink, links_by_id: Mapping[str, ChainLink]) -> tuple[str, ...]:
    """Every set id ``link`` may need: its recorded chain, and the parents it leads to among
    ``links_by_id`` (the two differ only in a tampered or mixed-up manifest: both, to be safe)."""
    walked = _parent_walk(link, links_by_id)
    return (*link.chain, *(i for i in walked if i not in link.chain))


def _parent_walk(link: ChainLink, links_by_id: Mapping[str, ChainLink]) -> tuple[str, ...]:
    """The parent, its parent... as far as ``links_by_id`` holds them (stopping at a loop)."""
    walked: list[str] = []
    current = link
    while current.parent_backup_set_id is not None and current.parent_backup_set_id not in walked:
        if current.parent_backup_set_id == link.backup_set_id:
            break
        walked.append(current.parent_backup_set_id)
        parent = links_by_id.get(current.parent_backup_set_id)
        if parent is None:
            break
        current = parent
    return tuple(walked)


def deletion_order(links: Iterable[ChainLink]) -> tuple[ChainLink, ...]:
    """``links`` in the order to delete them: every set after all of its descendants among them,
    otherwise newest first. A deletion interrupted anywhere then leaves shorter chains that are
    still whole, never an incremental without its parent."""
    by_id = {link.backup_set_id: link for link in links}
    newest_first = sorted(by_id.values(), key=lambda link: (link.finished_at, link.backup_set_id), reverse=True)
    rank = {link.backup_set_id: position for position, link in enumerate(newest_first)}
    ancestors = {
        set_id: [a for a in ancestors_of(link, by_id) if a in by_id and a != set_id] for set_id, link in by_id.items()
    }
    waiting = dict.fromkeys(by_id, 0)  # set id -> how many of its descendants are still to delete
    for found in ancestors.values():
        for ancestor in found:
            waiting[ancestor] += 1
    ready = [(rank[set_id], set_id) for set_id, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[ChainLink] = []
    done: set[str] = set()
    while len(ordered) < len(by_id):
        if not ready:
            # Only a loop of tampered manifests gets here: break it at its newest set.
            ready = [min((rank[i], i) for i in by_id if i not in done)]
        _, set_id = heapq.heappop(ready)
        if set_id in done:
            continue
        done.add(set_id)
        ordered.append(by_id[set_id])
        for ancestor in ancestors[set_id]:
            waiting[ancestor] -= 1
            if waiting[ancestor] == 0 and ancestor not in done:
                heapq.heappush(ready, (rank[ancestor], ancestor))
    return tuple(ordered)
