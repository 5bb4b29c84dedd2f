"""The restore test (hms_restore_test) as plain Python: which set, in which mode, restored how,
checked against what, and the report it leaves.

``records`` holds what one step hands the next (typed, across XCom); ``plan`` reads the request and
chooses the set and the mode (logical only while no base backup reaches the set); ``logical``
restores the set into a scratch database on the isolated restore server; ``drill`` recovers the
newest base backup to the set's snapshot LSN into a throw-away cluster (``hms_dr.physical.drill``
checks its blocks); ``rto`` judges the time it took; ``report`` checks a restored copy against the
set's baselines and stores the report. The policy's ``restore_test:`` section is a different
thing: ``hms_dr.policy.RestoreTestPolicy``.

Nothing is imported here, so a step loads only what it uses (the DAG files import the edge).
"""
