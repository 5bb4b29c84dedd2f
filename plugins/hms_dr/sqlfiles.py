"""The SQL the engine runs, kept one query per file in include/sql/ and named for its question."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "include" / "sql"


@cache
def text(name: str) -> str:
    """The query in include/sql/<name>.sql, without its trailing semicolon."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8").strip().rstrip(";")
