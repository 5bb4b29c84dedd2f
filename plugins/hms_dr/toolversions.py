"""Versions of the external programs a manifest records (pg tools report their own via pgtools)."""

from __future__ import annotations

import subprocess


def zstd_version() -> str:
    """``1.5.4`` from ``zstd --version`` ("*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***")."""
    done = subprocess.run(["zstd", "--version"], capture_output=True, text=True, timeout=30)
    words = done.stdout.replace(",", " ").split()
    return next((w.lstrip("v") for w in words if w.startswith("v") and w[1:2].isdigit()), done.stdout.strip())
