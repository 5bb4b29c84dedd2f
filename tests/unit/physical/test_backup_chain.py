"""Chains of incremental base backups: reading the chain fields, resolving a tip to its whole
chain (and refusing every way a chain breaks), the fields of a new incremental, the order to
delete a chain in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hms_dr.catalog import BackupSet
from hms_dr.errors import BackupChainBroken, ManifestInvalid, NoBackupForTarget
from hms_dr.manifest import BackupKind, Manifest, new_backup_set_id
from hms_dr.physical.chain import (
    BackupChain,
    BackupType,
    ancestors_of,
    chain_fields_for_child,
    chain_link_of,
    deletion_order,
    descendants_of,
    full_backup_fields,
    resolve_chain,
)

DAY1 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
SYSTEM = "7400000000000000001"


def a_base(
    finished_at: datetime, section: dict[str, Any] | None = None, *, kind: BackupKind = BackupKind.BASE
) -> BackupSet:
    set_id = new_backup_set_id(finished_at - timedelta(minutes=30))
    body = {"base_backup": {"system_identifier": SYSTEM, **(section or {})}}
    manifest = Manifest(kind, set_id, "hms-primary", finished_at - timedelta(minutes=30), finished_at, (), body)
    return BackupSet(manifest=manifest, manifest_key=f"hms-primary/{kind.value}/{set_id}/manifest.json")


def a_child(parent: BackupSet, after: timedelta = timedelta(days=1), **overrides: Any) -> BackupSet:
    return a_base(parent.finished_at + after, {**chain_fields_for_child(parent), **overrides})


def chain_of(length: int) -> list[BackupSet]:
    """A full backup and length - 1 incrementals, each taken a day after its parent."""
    sets = [a_base(DAY1)]
    for _ in range(length - 1):
        sets.append(a_child(sets[-1]))
    return sets


def by_id(*sets: BackupSet) -> dict[str, BackupSet]:
    return {s.backup_set_id: s for s in sets}


# -- the chain fields of one set ---------------------------------------------------------------


def test_a_set_written_before_incrementals_is_a_full_backup() -> None:
    for body in ({}, {"base_backup": {"start_wal_file": "000000010000000000000002"}}):
        manifest = Manifest(BackupKind.BASE, "20261101T030000Z", "c", DAY1, DAY1, (), body)
        link = chain_link_of(BackupSet(manifest, "c/base/20261101T030000Z/manifest.json"))
        assert link.backup_type is BackupType.FULL and not link.is_incremental
        assert link.chain == () and link.parent_backup_set_id is None
        assert link.full_backup_set_id == "20261101T030000Z"


def test_an_incremental_reads_its_parent_chain_and_system_identifier() -> None:
    full, first, second = chain_of(3)
    link = chain_link_of(second)
    assert link.is_incremental and link.parent_backup_set_id == first.backup_set_id
    assert link.chain == (full.backup_set_id, first.backup_set_id)
    assert link.full_backup_set_id == full.backup_set_id and link.system_identifier == SYSTEM
    assert link.lineage == (full.backup_set_id, first.backup_set_id, second.backup_set_id)


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"backup_type": "differential"}, "backup_type 'differential'"),
        ({"backup_type": "incremental", "chain": ["20261201T023000Z"]}, "without a parent"),
        ({"backup_type": "incremental", "parent_backup_set_id": "20261201T023000Z"}, "without a chain"),
        ({"backup_type": "incremental", "parent_backup_set_id": "20261201T023000Z", "chain": []}, "without a chain"),
        ({"backup_type": "incremental", "parent_backup_set_id": "A", "chain": ["A", "B"]}, "chain ends with B"),
        ({"backup_type": "incremental", "parent_backup_set_id": "A", "chain": ["A", "A"]}, "names a set twice"),
        ({"backup_type": "full", "parent_backup_set_id": "A"}, "full backup but names a parent"),
        ({"chain": ["A"]}, "full backup but names a parent or a chain"),
    ],
)
def test_chain_fields_that_contradict_each_other_are_refused(section: dict[str, Any], words: str) -> None:
    with pytest.raises(ManifestInvalid, match=words):
        chain_link_of(a_base(DAY1, section))


def test_a_chain_naming_the_set_itself_is_refused() -> None:
    own = new_backup_set_id(DAY1 - timedelta(minutes=30))  # the id a_base gives a set finished at DAY1
    tampered = a_base(DAY1, {"backup_type": "incremental", "parent_backup_set_id": own, "chain": [own]})
    assert tampered.backup_set_id == own
    with pytest.raises(ManifestInvalid, match="names a set twice"):
        chain_link_of(tampered)


def test_only_base_sets_have_chains() -> None:
    with pytest.raises(ManifestInvalid, match="not a base backup"):
        chain_link_of(a_base(DAY1, kind=BackupKind.LOGICAL))


# -- the fields of a new incremental -----------------------------------------------------------


def test_a_child_of_a_full_starts_the_chain_and_a_child_of_an_incremental_extends_it() -> None:
    full = a_base(DAY1)
    assert chain_fields_for_child(full) == {
        "backup_type": "incremental",
        "parent_backup_set_id": full.backup_set_id,
        "chain": [full.backup_set_id],
    }
    first = a_child(full)
    assert chain_fields_for_child(first) == {
        "backup_type": "incremental",
        "parent_backup_set_id": first.backup_set_id,
        "chain": [full.backup_set_id, first.backup_set_id],
    }
    assert full_backup_fields() == {"backup_type": "full"}


def test_the_example_of_the_manifest_docs() -> None:
    full = a_base(datetime(2026, 12, 1, 3, 30, tzinfo=UTC))  # id 20261201T030000Z
    first = a_base(datetime(2026, 12, 2, 3, 30, tzinfo=UTC), chain_fields_for_child(full))
    fields = chain_fields_for_child(first)
    assert fields["chain"] == ["20261201T030000Z", "20261202T030000Z"]
    assert fields["parent_backup_set_id"] == fields["chain"][-1]


# -- resolving a chain -------------------------------------------------------------------------


def test_a_full_backup_is_a_chain_of_one() -> None:
    full = a_base(DAY1)
    chain = resolve_chain(full, by_id(full))
    assert chain.ids == (full.backup_set_id,) and chain.full == chain.tip == full
    assert not chain.is_incremental and chain.system_identifier == SYSTEM


def test_an_incremental_resolves_to_every_link_from_its_full_oldest_first() -> None:
    sets = chain_of(5)
    unrelated = a_base(DAY1 + timedelta(days=2, hours=6))
    chain = resolve_chain(sets[-1], by_id(*reversed(sets), unrelated))
    assert isinstance(chain, BackupChain)
    assert chain.ids == tuple(s.backup_set_id for s in sets)
    assert chain.sets == tuple(sets) and chain.full == sets[0] and chain.tip == sets[-1]
    assert chain.is_incremental
    # A tip in the middle: the chain ends there.
    assert resolve_chain(sets[2], by_id(*sets)).ids == tuple(s.backup_set_id for s in sets[:3])


def test_a_missing_link_names_itself_and_the_tip() -> None:
    full, first, second, third = chain_of(4)
    with pytest.raises(BackupChainBroken) as raised:
        resolve_chain(third, by_id(full, second, third))
    error = raised.value
    assert first.backup_set_id in error.message and third.backup_set_id in error.message
    assert "is not in the store" in error.message and "\n" not in error.message
    assert error.hint and "full base backup" in error.hint
    assert error.missing_backup_set_id == first.backup_set_id
    assert error.tip_backup_set_id == third.backup_set_id
    assert isinstance(error, NoBackupForTarget)  # a tip that cannot be restored serves no target


def test_a_missing_full_backup_breaks_the_chain_too() -> None:
    full, first = chain_of(2)
    with pytest.raises(BackupChainBroken, match=full.backup_set_id) as raised:
        resolve_chain(first, by_id(first))
    assert raised.value.missing_backup_set_id == full.backup_set_id


def test_a_link_of_another_cluster_names_both_system_identifiers() -> None:
    full = a_base(DAY1, {"system_identifier": "7400000000000000999"})
    first = a_child(full, system_identifier=SYSTEM)
    with pytest.raises(BackupChainBroken) as raised:
        resolve_chain(first, by_id(full, first))
    assert "7400000000000000999" in raised.value.message and SYSTEM in raised.value.message
    assert raised.value.missing_backup_set_id is None


def test_a_chain_that_disagrees_with_the_parents_own_chain_is_refused() -> None:
    full, first = chain_of(2)
    other_full = a_base(DAY1 - timedelta(days=7))
    # The second incremental claims its chain starts at another full: a mixed-up manifest.
    mixed_up = a_child(first, chain=[other_full.backup_set_id, first.backup_set_id])
    with pytest.raises(BackupChainBroken, match="tampered or mixed-up"):
        resolve_chain(mixed_up, by_id(full, first, other_full, mixed_up))


def test_a_parent_not_older_than_its_child_is_refused() -> None:
    full = a_base(DAY1)
    a_second_later = a_base(DAY1 + timedelta(seconds=1), chain_fields_for_child(full))
    assert resolve_chain(a_second_later, by_id(full, a_second_later)).ids == (
        full.backup_set_id,
        a_second_later.backup_set_id,
    )
    earlier = a_base(DAY1 - timedelta(hours=1), chain_fields_for_child(full))
    with pytest.raises(BackupChainBroken, match="is not older than its child"):
        resolve_chain(earlier, by_id(full, earlier))
    simultaneous = Manifest(
        BackupKind.BASE,
        "20261201T030001Z",
        "hms-primary",
        DAY1,
        full.finished_at,
        (),
        {"base_backup": {"system_identifier": SYSTEM, **chain_fields_for_child(full)}},
    )
    with pytest.raises(BackupChainBroken, match="is not older"):
        resolve_chain(BackupSet(simultaneous, "k"), by_id(full))


def test_parents_that_loop_are_refused() -> None:
    def incremental(set_id: str, parent: str, chain: list[str], finished_at: datetime) -> BackupSet:
        section = {"system_identifier": SYSTEM, "backup_type": "incremental", "parent_backup_set_id": parent}
        manifest = Manifest(
            BackupKind.BASE, set_id, "c", finished_at, finished_at, (), {"base_backup": {**section, "chain": chain}}
        )
        return BackupSet(manifest, f"c/base/{set_id}/manifest.json")

    a = incremental("20261203T030000Z", "20261202T030000Z", ["20261202T030000Z"], DAY1 + timedelta(days=2))
    b = incremental("20261202T030000Z", "20261203T030000Z", ["20261203T030000Z"], DAY1 + timedelta(days=1))
    with pytest.raises(BackupChainBroken, match="loops"):
        resolve_chain(a, by_id(a, b))


def test_a_link_whose_chain_fields_cannot_be_read_is_manifest_invalid_not_a_guess() -> None:
    full, first = chain_of(2)
    broken_full = a_base(full.finished_at, {"backup_type": "weird"})
    broken = BackupSet(
        Manifest(
            BackupKind.BASE,
            full.backup_set_id,
            "hms-primary",
            full.manifest.started_at,
            full.finished_at,
            (),
            broken_full.manifest.body,
        ),
        full.manifest_key,
    )
    with pytest.raises(ManifestInvalid, match="backup_type 'weird'"):
        resolve_chain(first, by_id(broken, first))


# -- what retention asks of chains -------------------------------------------------------------


def test_descendants_and_ancestors_follow_the_recorded_chain() -> None:
    full, first, second = chain_of(3)
    other_full = a_base(DAY1 + timedelta(days=10))
    links = [chain_link_of(s) for s in (full, first, second, other_full)]
    assert descendants_of(full.backup_set_id, links) == (first.backup_set_id, second.backup_set_id)
    assert descendants_of(second.backup_set_id, links) == ()
    by_link = {link.backup_set_id: link for link in links}
    assert ancestors_of(by_link[second.backup_set_id], by_link) == (full.backup_set_id, first.backup_set_id)
    assert ancestors_of(by_link[full.backup_set_id], by_link) == ()


def test_a_chain_is_deleted_newest_first_and_never_a_parent_before_its_child() -> None:
    chain = chain_of(4)
    lone = a_base(DAY1 + timedelta(hours=12))
    order = [link.backup_set_id for link in deletion_order(chain_link_of(s) for s in [*chain, lone])]
    assert order == [s.backup_set_id for s in (chain[3], chain[2], chain[1], lone, chain[0])]


def test_a_child_that_claims_to_be_older_than_its_parent_is_still_deleted_first() -> None:
    full = a_base(DAY1)
    child = a_base(DAY1 - timedelta(days=1), chain_fields_for_child(full))  # a clock gone wrong
    order = [link.backup_set_id for link in deletion_order([chain_link_of(full), chain_link_of(child)])]
    assert order == [child.backup_set_id, full.backup_set_id]
