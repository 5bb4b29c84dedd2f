"""Disaster-recovery restores (``hms_dr_restore``, runbook scenarios 1 and 3): chosen tables, or
the whole database, brought back from a logical backup set or from a point in time, into a
staging schema of production or a new database, checked, and, only after a human approval,
swapped into production with the replaced tables kept in a quarantine schema.

``request`` validates what the operator asked for; ``staging`` builds the source the tables are
taken from (a scratch database restored from the set, or a scratch cluster recovered to the
point in time); ``copy`` moves them into production's staging schema or the new database;
``swap`` plans the exchange from production's catalog and runs it in one transaction;
``verify`` checks the staged tables and production after the swap; ``report`` writes what the
approver reads.
"""
