"""Offsite copies: every complete backup set of the primary store, copied to a second store.

``folders`` lists the set folders of one kind in a store (one listing, no manifest read),
``plan`` decides purely what to copy, repair and re-verify, ``copy`` streams one set across
(payloads first, each proven by the sha256 of the bytes as stored offsite, the manifest last),
``sync`` runs a whole pass and ``freshness`` judges the age of the newest offsite copy per kind
(the one judge: hms_offsite_sync and hms_backup_freshness both call it). The policy's
``offsite:`` section is read by ``hms_dr.policy.offsite``. Nothing here imports airflow or boto3.
"""

from __future__ import annotations
