"""Offsite copies: every complete backup set of the primary store, copied to a second store.

``folders`` lists the set folders of one kind in a store (one listing, no manifest read),
``plan`` decides purely what to copy, repair and re-verify, ``copy`` streams one set across
(payloads first, each proven by the sha256 of the bytes as stored offsite, the manifest last),
``sync`` runs a whole pass and ``freshness`` judges the age of the newest offsite copy per kind.
``policy`` reads the policy's ``offsite:`` section. Nothing here imports airflow or boto3.
"""

from __future__ import annotations
