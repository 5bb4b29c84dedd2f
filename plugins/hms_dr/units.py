"""Sizes and rates written for the people who read the logs."""

from __future__ import annotations


def human_bytes(size_bytes: float) -> str:
    """1536 -> '1.5 KiB'; 5.8 * 2**20 -> '5.8 MiB'."""
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_rate(size_bytes: float, seconds: float) -> str:
    """Throughput as MiB/s, guarded against a zero duration."""
    return f"{size_bytes / (1 << 20) / max(seconds, 1e-6):.1f} MiB/s"


def human_duration(seconds: float) -> str:
    """An ETA or an elapsed time: 42 -> '42 s', 754 -> '12 min 34 s', 9000 -> '2 h 30 min'."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
