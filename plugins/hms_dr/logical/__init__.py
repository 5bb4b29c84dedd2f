"""A logical backup: pg_dump of the database with its baselines, in one snapshot, streamed.

``snapshot.take_logical_backup`` takes the dumps and baselines; ``dump`` streams one pg_dump
into the store; ``verify`` checks it on the way; ``sets`` publishes the manifests.
"""

from __future__ import annotations

from hms_dr.logical.sets import manifest_extra, publish_logical_sets
from hms_dr.logical.snapshot import take_logical_backup

__all__ = ["manifest_extra", "publish_logical_sets", "take_logical_backup"]
