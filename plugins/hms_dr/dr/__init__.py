"""Disaster-recovery restores (``hms_dr_restore``, runbook scenarios 1 and 3): chosen tables, or
the whole database, brought back from a logical backup set or from a point in time, into a
staging schema of production or a new database, checked, and, only after a human approval,
swapped into production with the replaced tables kept in a quarantine schema.

``request`` validates what the operator asked for and ``validate`` checks it against the store
and production, handing on a ``validated.ValidatedRestore``; ``source`` chooses, builds and
removes the source the tables are taken from (a scratch database restored from the set, or a
scratch cluster recovered to the point in time), ``staging`` readies the tables there and
``copy`` moves them into production's staging schema or the new database (together:
``restore_into_target``); ``check_restored`` chooses and runs the quality checks (with ``verify``)
and plans the swap; ``approval`` says who may approve and whether an answer approves,
``approval_request`` asks, ``approved_swap`` judges the answer and swaps (``swap``/``swap_plan``:
the exchange from production's catalog, in one transaction), ``after_swap`` checks production;
``report`` writes what the approver reads; ``outcome`` says how a run ended. ``pitr`` is
hms_dr_pitr's: a point-in-time recovery into a new cluster.
"""
