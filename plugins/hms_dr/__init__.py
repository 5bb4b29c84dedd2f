"""hms-dr engine: backups of a PostgreSQL database that are proven restorable.

Everything in this package except ``hms_dr.tasks`` is plain Python that never imports Airflow:
functions take DSNs, stores and paths and return plain records.
"""
