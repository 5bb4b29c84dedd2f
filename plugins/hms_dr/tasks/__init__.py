"""The Airflow edge of hms-dr: the only part of the package that imports airflow.

Task callables build engine inputs (ConnectionInfo, Store, keys) from Airflow Connections,
call the engine, and map its errors to Airflow's retry decisions. DAG files wire these up.
"""
