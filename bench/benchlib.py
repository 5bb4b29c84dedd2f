"""Shared helpers of the benchmark scripts: the bench sandbox, the machine, CPU accounting, results.

Benchmarks are scripts, not tests: they print, and they write ``bench/results/<date>-<name>.md``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The engine (plugins/) and the sandbox that starts the servers the benchmarks run on (sandbox/).
for _root in (REPO / "sandbox", REPO / "plugins"):
    if str(_root) not in sys.path:
        sys.path.insert(0, str(_root))

BENCH_STATE_DIR = REPO / ".sandbox-bench"
RESULTS_DIR = REPO / "bench" / "results"
MB = 1_000_000
MIB = 1 << 20
OTHER_LABEL = "other processes on the machine (not this benchmark)"

log = logging.getLogger("bench")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.setLevel(logging.INFO)


# -- the bench sandbox -------------------------------------------------------------------------


def bench_state_dir(pg_major: int = 15) -> Path:
    """<repo>/.sandbox-bench for PostgreSQL 15, <repo>/.sandbox-bench-pg<major> for another major."""
    return BENCH_STATE_DIR if pg_major == 15 else BENCH_STATE_DIR.with_name(f"{BENCH_STATE_DIR.name}-pg{pg_major}")


def start_bench_sandbox(scale_mb: float, pg_major: int = 15, state_dir: Path | None = None) -> Any:
    """The bench sandbox of ``pg_major`` (in ``state_dir``, default bench_state_dir), started
    (and loaded once) at ``scale_mb``."""
    from hms_sandbox import start_sandbox

    state_dir = state_dir or bench_state_dir(pg_major)
    started = time.monotonic()
    print(
        f"starting the bench sandbox in {state_dir} (PostgreSQL {pg_major}, scale {scale_mb:g} MB; "
        "the first start loads the data)...",
        flush=True,
    )
    sandbox = start_sandbox(state_dir=state_dir, scale_mb=scale_mb, pg_major=pg_major)
    print(
        f"sandbox up in {time.monotonic() - started:.1f} s: PostgreSQL 127.0.0.1:{sandbox.pg_port}, S3 {sandbox.s3_endpoint_url}",
        flush=True,
    )
    return sandbox


def stop_bench_sandbox(pg_major: int = 15, state_dir: Path | None = None) -> None:
    from hms_sandbox import stop_sandbox

    state_dir = state_dir or bench_state_dir(pg_major)
    stop_sandbox(state_dir=state_dir)
    print(f"bench sandbox stopped (data kept in {state_dir}; the next run reuses it)")


def backup_connection(sandbox: Any) -> Any:
    """ConnectionInfo of the backup role (hms_backup) on the sandbox's HMS database."""
    from hms_dr.pgtools import ConnectionInfo

    return ConnectionInfo(
        host="127.0.0.1",
        port=sandbox.pg_port,
        user="hms_backup",
        dbname=sandbox.database,
        password=sandbox.secrets.role_passwords["hms_backup"],
    )


def replication_connection(sandbox: Any) -> Any:
    """ConnectionInfo of the replication role (hms_replica), as the base backup DAG logs in."""
    from hms_dr.pgtools import ConnectionInfo

    return ConnectionInfo(
        host="127.0.0.1",
        port=sandbox.pg_port,
        user="hms_replica",
        dbname=sandbox.database,
        password=sandbox.secrets.role_passwords["hms_replica"],
    )


def s3_client(sandbox: Any) -> Any:
    """A boto3 client for the sandbox's moto server, configured like the tasks layer's."""
    from botocore.config import Config

    return sandbox.s3_client(
        Config(connect_timeout=10, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"})
    )


def encryption_key(sandbox: Any) -> Any:
    from hms_dr.crypto import EncryptionKey
    from hms_dr.policy import EncryptionMode

    return EncryptionKey(EncryptionMode.PUBLIC_KEY, sandbox.fingerprint, public_key=sandbox.secrets.gpg_public_key)


def database_size(conn: Any) -> int:
    from hms_dr.database import connect

    with connect(conn) as connection:
        return int(connection.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def server_version(conn: Any) -> str:
    from hms_dr.database import connect

    with connect(conn) as connection:
        return str(connection.execute("SELECT version()").fetchone()[0])


# -- the machine -------------------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except OSError as exc:
        return f"unavailable ({exc})"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"


def machine_info(extra_tools: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """nproc, memory, CPU model, kernel and the tool versions, for the results file;
    ``extra_tools`` maps more names to the argv that prints their version."""
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    from hms_dr.pginstalls import discover_installs

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{mem_kib / 2**20:.1f} GiB",
        "cpu": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "PostgreSQL installs": ", ".join(install.describe() for install in discover_installs()),
        "zstd": _first_line(["zstd", "--version"]),
        "gpg": _first_line(["gpg", "--version"]),
        **{name: _first_line(argv) for name, argv in (extra_tools or {}).items()},
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def busy_other_processes(exclude_pids: Iterable[int] = ()) -> list[str]:
    """Processes not ours using noticeable CPU right now (the machine is shared): 'name pid %cpu'."""
    import psutil

    excluded = set(exclude_pids) | {os.getpid()}
    procs = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid not in excluded]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= 10:
            busy.append(f"{p.info['name']} (pid {p.pid}) {pct:.0f}% CPU")
    return busy


# -- CPU accounting ----------------------------------------------------------------------------

_THREAD_LABELS = {
    "MainThread": "python main thread (reads gpg output, sha256, S3 put; read-back GET + sha256)",
    "pipeline-pump": "python tap thread (pipe copy, sha256 of plain bytes, feed pg_restore)",
    "hms-dr-s3-parts": "python S3 part-upload thread (boto3 upload_part)",
    "baselines": "python baselines thread (waits on PostgreSQL)",
}


_UNNAMED = "python threads not known to threading (native)"
_SHORT_THREADS = "python short-lived threads (ended between samples)"


def _thread_label(name: str) -> str:
    if name in _THREAD_LABELS:
        return _THREAD_LABELS[name]
    if name.startswith("bench-cpu-sampler"):
        return "bench CPU sampler (measurement overhead)"
    return "python other threads (stderr drains, pg_restore reader)"


def _process_label(proc: Any, moto_pid: int | None, postmaster_pid: int | None) -> str:
    try:
        if proc.pid == moto_pid:
            return "moto S3 server (sandbox only; not a cost with real S3)"
        cmdline = " ".join(proc.cmdline())
        if postmaster_pid is not None and (proc.pid == postmaster_pid or proc.ppid() == postmaster_pid):
            if "hms_backup" in cmdline:
                return "postgres backends of hms_backup (pg_dump, baselines)"
            if "walsender" in cmdline:
                return "postgres walsenders (pg_basebackup's file and WAL streams)"
            return "postgres background processes (bench cluster)"
        name = proc.name()
    except Exception:
        return "gone"
    if name == "bash" and "pipefail" in cmdline:
        return "bash (runs the pipeline)"
    if "archive_digest.py" in cmdline:
        return "archive_digest.py (content digests of every table)"
    if name == "pgbackrest":
        if cmdline.endswith(":local"):
            return "pgbackrest local processes (read files, page checksums, zstd, encrypt, write the repo)"
        return "pgbackrest main process (backup start/stop, manifest)"
    return name


@dataclass
class CpuSampler:
    """Samples, every ``interval`` seconds, the CPU time of this process's threads, of its child
    processes (pg_dump, zstd, gpg, pg_restore), of the moto server and of the bench cluster's
    PostgreSQL processes. ``totals()`` is CPU seconds per label between start() and stop().

    A process that exits between two samples loses at most ``interval`` of CPU in the figures.
    The machine-wide busy CPU over the same span is kept too: what is left after our processes
    is other work on the (shared) machine competing for the cores.
    """

    moto_pid: int | None = None
    postmaster_pid: int | None = None
    interval: float = 0.25
    _base: dict[Any, float] = field(default_factory=dict)
    _last: dict[Any, float] = field(default_factory=dict)
    _labels: dict[Any, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _first: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _retired: dict[str, float] = field(default_factory=dict)

    def _processes(self) -> list[Any]:
        import psutil

        me = psutil.Process()
        procs = {p.pid: p for p in me.children(recursive=True)}
        for pid in (self.moto_pid, self.postmaster_pid):
            if pid is None:
                continue
            try:
                root = psutil.Process(pid)
            except psutil.Error:
                continue
            procs[pid] = root
            if pid == self.postmaster_pid:
                for child in root.children():
                    procs[child.pid] = child
        return list(procs.values())

    def sample(self) -> None:
        import psutil

        names = {t.native_id: t.name for t in threading.enumerate()}
        seen: list[tuple[Any, str | None, float]] = []
        for th in psutil.Process().threads():
            # A thread started between enumerate() and threads() has no name yet: label it later.
            name = names.get(th.id)
            seen.append((("thread", th.id), _thread_label(name) if name else None, th.user_time + th.system_time))
        for proc in self._processes():
            try:
                times = proc.cpu_times()
                key = ("proc", proc.pid, proc.create_time())
                proc_label = self._labels.get(key) or _process_label(proc, self.moto_pid, self.postmaster_pid)
            except psutil.Error:
                continue
            seen.append((key, proc_label, times.user + times.system))
        with self._lock:
            for key, label, cpu in seen:
                if key in self._last and cpu < self._last[key]:
                    # A thread id reused by a new thread: keep what the old one used.
                    self._retire(key)
                if key not in self._last:
                    self._base[key] = cpu if self._first else 0.0
                if label is not None and (key not in self._labels or self._labels[key] == _UNNAMED):
                    self._labels[key] = label
                self._labels.setdefault(key, _UNNAMED)
                self._last[key] = cpu
            self._first = False

    def _retire(self, key: Any) -> None:
        label = self._labels.get(key, _UNNAMED)
        self._retired[label] = self._retired.get(label, 0.0) + self._last[key] - self._base.get(key, 0.0)
        del self._last[key]
        self._labels.pop(key, None)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception as exc:  # a process vanishing mid-sample; the next sample catches up
                log.debug("cpu sample failed: %s", exc)

    _machine_start: float = 0.0
    machine_busy: float = 0.0

    @staticmethod
    def _machine_busy_now() -> float:
        import psutil

        t = psutil.cpu_times()
        return float(
            t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)
        )

    _own_start: float = 0.0

    @staticmethod
    def _own_now() -> float:
        import psutil

        t = psutil.Process().cpu_times()
        return float(t.user + t.system)

    def start(self) -> CpuSampler:
        self._machine_start = self._machine_busy_now()
        self._own_start = self._own_now()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        self.machine_busy = self._machine_busy_now() - self._machine_start
        own = self._own_now() - self._own_start
        totals = self.totals()
        by_threads = sum(self._thread_deltas().values())
        if own - by_threads > 0.05:  # threads that started and ended between two samples
            totals[_SHORT_THREADS] = own - by_threads
            totals = dict(sorted(totals.items(), key=lambda kv: -kv[1]))
        ours = sum(totals.values())
        if self.machine_busy > ours:
            totals[OTHER_LABEL] = self.machine_busy - ours
        return totals

    def _thread_deltas(self) -> dict[Any, float]:
        with self._lock:
            deltas = {k: self._last[k] - self._base.get(k, 0.0) for k in self._last if k[0] == "thread"}
        retired_threads = sum(v for label, v in self._retired.items() if label.startswith(("python", "bench")))
        deltas["retired"] = retired_threads
        return deltas

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = dict(self._retired)
        with self._lock:
            for key, label in self._labels.items():
                delta = self._last.get(key, 0.0) - self._base.get(key, 0.0)
                if delta > 0.005:
                    out[label] = out.get(label, 0.0) + delta
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def own_cpu(cpu: dict[str, float]) -> float:
    """CPU seconds of the benchmark's own processes (without other work on the machine)."""
    return sum(v for k, v in cpu.items() if k != OTHER_LABEL)


def cpu_cells(run: Mapping[str, Any]) -> list[str]:
    """A run's "our CPU s" and "CPU s of other work" cells, from its ``cpu`` (CPU seconds per label)."""
    return [f"{own_cpu(run['cpu']):.0f}", f"{run['cpu'].get(OTHER_LABEL, 0.0):.0f}"]


def measure(fn: Callable[[], Any], sampler: CpuSampler | None = None) -> tuple[float, Any, dict[str, float]]:
    """(wall seconds, fn's result, CPU seconds per label)."""
    if sampler is not None:
        sampler.start()
    started = time.monotonic()
    try:
        result = fn()
    finally:
        wall = time.monotonic() - started
        cpu = sampler.stop() if sampler is not None else {}
    return wall, result, cpu


# -- figures and results -----------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def tree_bytes(directory: Path) -> int:
    """Bytes in the files under ``directory``, at any depth (0 when it does not exist)."""
    total = 0
    for parent, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except FileNotFoundError:
                continue
    return total


def fmt_mb(n: float) -> str:
    return f"{n / MB:,.1f} MB"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_table(cpu: dict[str, float], wall: float) -> str:
    total = sum(cpu.values())
    rows = [[label, f"{sec:.1f}", f"{100 * sec / max(total, 1e-9):.0f}%"] for label, sec in cpu.items()]
    rows.append(
        ["**total, machine-wide**", f"{total:.1f}", f"{total / max(wall, 1e-9):.2f} cores busy over {wall:.1f} s wall"]
    )
    return markdown_table(["process / thread", "CPU s", "share"], rows)


def busy_section(busy: Sequence[str]) -> str:
    """The results file's section on other processes busy at the start ('' when there were none)."""
    return "\n## Other busy processes at start\n\n" + "\n".join(f"- {b}" for b in busy) + "\n" if busy else ""


def results_path(name: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR / f"{date.today().isoformat()}-{name}.md"


def write_results(name: str, title: str, machine: dict[str, str], pg_version: str, body: str) -> Path:
    path = results_path(name)
    header = [f"# {title}", "", f"Date: {date.today().isoformat()}", "", "## Machine", ""]
    header += [f"- {key}: {value}" for key, value in machine.items()]
    header += [f"- PostgreSQL server: {pg_version}", ""]
    path.write_text("\n".join(header) + "\n" + body.rstrip() + "\n", encoding="utf-8")
    print(f"results written to {path.relative_to(REPO)}")
    return path


# -- the restore target (helpers of restore_test_vs_pg_restore.py) -----------------------------


def decryption_key(sandbox: Any) -> Any:
    """The sandbox's restore key: its GPG secret key and passphrase (what hms_restore_key holds)."""
    from hms_dr.crypto import DecryptionKey
    from hms_dr.policy import EncryptionMode

    return DecryptionKey(
        EncryptionMode.PUBLIC_KEY, private_key=sandbox.secrets.gpg_secret_key, passphrase=sandbox.secrets.gpg_passphrase
    )


def restore_target_admin(sandbox: Any) -> Any:
    """ConnectionInfo of the restore-target cluster's superuser (what hms_restore_target holds)."""
    from hms_dr.pgtools import ConnectionInfo
    from hms_sandbox.cluster import SUPERUSER

    if sandbox.restore_target_port is None:
        raise RuntimeError("this sandbox has no restore-target cluster: restart it with the current code")
    return ConnectionInfo(
        host="127.0.0.1",
        port=sandbox.restore_target_port,
        user=SUPERUSER,
        dbname="postgres",
        password=sandbox.secrets.role_passwords["restore_target_postgres"],
    )


def restore_target_postmaster_pid(sandbox: Any) -> int | None:
    """The restore-target cluster's postmaster pid (its layout: <state>/pg/restore-target)."""
    from hms_sandbox.cluster import LocalCluster

    if sandbox.restore_target_port is None:
        return None
    base = sandbox.state_dir / "pg" / "restore-target"
    return LocalCluster(
        base / "data", sandbox.restore_target_port, base / "log" / "postgresql.log", base / "sockets"
    ).postmaster_pid()


def relabel_cpu(cpu: dict[str, float], labels: dict[str, str]) -> dict[str, float]:
    """CPU seconds per label with some labels renamed (merged when two land on one name)."""
    out: dict[str, float] = {}
    for label, seconds in cpu.items():
        name = labels.get(label, label)
        out[name] = out.get(name, 0.0) + seconds
    return dict(sorted(out.items(), key=lambda kv: (kv[0] == OTHER_LABEL, -kv[1])))


def configure_logging(verbose: bool) -> None:
    """Warnings only unless --verbose; the engine's INFO lines are still captured by handlers."""
    import logging

    handler = logging.StreamHandler()
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("botocore").setLevel(logging.WARNING)


def primary_store(sandbox: Any, policy: Any) -> Any:
    """The bench sandbox's primary S3 store, with the policy's part size."""
    from hms_dr.store import open_store

    return open_store(
        f"s3://{sandbox.primary_bucket}",
        s3_client=s3_client(sandbox),
        part_size_bytes=policy.store.part_size_mib << 20,
    )


def empty_primary_store(sandbox: Any, policy: Any) -> Any:
    """The bench sandbox's primary S3 store, emptied of what an interrupted earlier run left."""
    store = primary_store(sandbox, policy)
    for stale in store.list(""):
        store.delete(stale.key)
    return store


# -- peak memory -------------------------------------------------------------------------------


@dataclass
class PeakSampler:
    """Samples ``probe`` (a figure per part: bytes per program, per directory) every ``interval``
    seconds in a thread and keeps the highest total and its parts. Something that lives shorter
    than ``interval`` may be missed."""

    probe: Callable[[], dict[str, int]]
    interval: float = 0.1
    peak: int = 0
    at_peak: dict[str, int] = field(default_factory=dict)  # the parts at the peak: who holds it
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        parts = self.probe()
        if sum(parts.values()) > self.peak:
            self.peak, self.at_peak = sum(parts.values()), parts

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> PeakSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="bench-peak-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.peak


def tree_rss(pid: int) -> dict[str, int]:
    """RSS per program of process ``pid`` and all its descendants (pg_dump, zstd, gpg, pg_restore,
    a quality-check child): a pipeline's process tree. Servers it talks to (PostgreSQL, moto)
    daemonize and are not in it. RSS counts shared pages once per process, so the sum over-counts
    shared libraries a little."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    by_name: dict[str, int] = {}
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            name = proc.name()
            by_name[name] = by_name.get(name, 0) + proc.memory_info().rss
    return by_name


def peak_rss(pid: int) -> PeakSampler:
    """The high-water mark of a process tree's summed RSS, sampled every 0.1 s."""
    return PeakSampler(lambda: tree_rss(pid), interval=0.1)


def peak_disk(directory: Path) -> PeakSampler:
    """The high-water mark of the bytes under ``directory`` (a pipeline's local staging), sampled
    every 0.5 s (a walk of a cluster's few thousand files takes milliseconds)."""
    return PeakSampler(lambda: {str(directory): tree_bytes(directory)}, interval=0.5)


# -- the pipelines as the DAGs' tasks run them (shared by the benches) --------------------------


def take_daily_set(conn: Any, sandbox: Any, policy: Any, store: Any) -> dict[str, Any]:
    """What hms_daily_logical_backup's tasks do, without Airflow: ``take_logical_backup`` (baselines
    and dumps), the read-back of every payload and the manifests. The set stays in the store.
    Returns the seconds of each phase (dump_step, readback, publish) and the records as XCom holds them."""
    from hms_dr import logical, publish

    t0 = time.monotonic()
    result = logical.take_logical_backup(
        conn,
        store,
        encryption_key(sandbox),
        cluster=policy.cluster.name,
        logical_backup=policy.logical_backup,
        compression=policy.compression,
        staging=policy.staging,
    )
    t1 = time.monotonic()
    readback = [publish.verify_stored_payload(store, p.key, p.payload) for d in result.dumps for p in d.payloads]
    t2 = time.monotonic()
    logical.publish_logical_sets(store, result, {"dag_id": "bench", "run_id": "bench"})  # the publish task's call
    t3 = time.monotonic()
    return {
        "dump_step": t1 - t0,
        "readback": t2 - t1,
        "publish": t3 - t2,
        "result": result.to_xcom(),
        "readback_records": [r.to_xcom() for r in readback],
    }


def take_weekly_base_backup(conn: Any, sandbox: Any, policy: Any, store: Any, **overrides: Any) -> dict[str, Any]:
    """``take_base_backup`` with the arguments hms_weekly_base_backup's back_up_cluster passes
    (the policy's base_backup settings); ``overrides`` adds or replaces keyword arguments (e.g.
    backup_type, method). The set stays in the store."""
    from hms_dr.physical.basebackup import take_base_backup

    settings = policy.base_backup
    settings.staging_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {
        "encryption_key": encryption_key(sandbox),
        "staging_dir": settings.staging_dir,
        "zstd_level": settings.zstd_level,
        "zstd_threads": settings.zstd_threads,
        "method": settings.method,
        "staging_limit_bytes": settings.staging_limit_mb << 20,
        "staging_space_ratio": settings.staging_space_ratio,
        "verify_readback": policy.store.verify_readback,
        "producer": {"dag_id": "bench", "run_id": "bench"},
        **overrides,
    }
    return take_base_backup(conn, store, policy.cluster.name, **kwargs)  # type: ignore[no-any-return]


def bare_pg_basebackup_argv(conn: Any, target: Path, *extra: str) -> list[str]:
    """The runbook's bare ``pg_basebackup -D <target> -Ft -X stream --checkpoint=fast`` (plain
    tars on local disk, the password in the environment), plus ``extra`` options."""
    from hms_dr.database import client_tools

    program = client_tools(conn).program("pg_basebackup")
    return [program, "-D", str(target), "-Ft", "-X", "stream", "--checkpoint=fast", "--no-password", *extra]


# -- the WAL archive of a bench sandbox ----------------------------------------------------------


def vacuum(dsn: str) -> float:
    """VACUUM (ANALYZE) of the whole database (not timed by any bench): dead row versions freed,
    and every page's hint bits and visibility set, as in a database that has lived a while. Its
    seconds, also printed."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    seconds = time.monotonic() - started
    print(f"VACUUM (ANALYZE) before the run: {seconds:.1f} s", flush=True)
    return seconds


def switch_and_archive_wal(sandbox: Any, superuser_dsn: str, timeout_s: float = 120) -> str:
    """Switch to a new WAL segment and wait until the finished one is in the sandbox's spool;
    its name (every segment before it is then archived too: the archiver goes in order)."""
    import psycopg

    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        name = str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])  # type: ignore[index]
    deadline = time.monotonic() + timeout_s
    while not (sandbox.paths.spool_dir / name).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} was not archived within {timeout_s:.0f} s")
        time.sleep(0.2)
    return name


def drop_spool_before(sandbox: Any, first_needed: str) -> None:
    """The bench sandbox's spool holds the WAL of its data load: no recovery here needs what
    precedes ``first_needed``, and shipping it would only time the load again (and fill disk)."""
    for segment in sandbox.paths.spool_dir.iterdir():
        if len(segment.name) == 24 and segment.name < first_needed:
            segment.unlink()


def ship_wal(sandbox: Any, store: Any, policy: Any) -> Any:
    """What hms_wal_archive does: every spool file not yet stored shipped (zstd | gpg) and removed."""
    from hms_dr.wal.ship import ship_spool

    return ship_spool(
        store,
        policy.cluster.name,
        sandbox.paths.spool_dir,
        encryption_key=encryption_key(sandbox),
        zstd_level=3,
        staging_dir=policy.staging.dir,
        remove_from_spool=True,
    )


# -- the bare restore of a logical dump (restore_test_vs_pg_restore.py, scaling.py) ------------

BARE_RESTORE_DB = "bench_bare_restore"


def drop_database(admin: Any, name: str) -> None:
    from hms_dr.database import client_tools
    from hms_dr.pgtools import tool_env

    subprocess.run(
        [client_tools(admin).program("dropdb"), "--no-password", "--if-exists", "--force", name],
        env=tool_env(admin),
        check=True,
    )


def bare_pg_restore(admin: Any, dump: Path, jobs: int, sampler: CpuSampler | None = None) -> dict[str, Any]:
    """createdb + pg_restore -j<jobs> of a local plain archive on the restore target, as a runbook
    would type them; the database is dropped afterwards (not timed)."""
    from hms_dr.database import client_tools
    from hms_dr.pgtools import tool_env

    env = tool_env(admin)
    pg = client_tools(admin)
    createdb = [pg.program("createdb"), "--no-password", "--template=template0", "--encoding=UTF8", BARE_RESTORE_DB]
    pg_restore = [pg.program("pg_restore"), f"--jobs={jobs}", "--exit-on-error", "--no-owner", "--no-privileges"]
    pg_restore += ["--no-password", f"--dbname={BARE_RESTORE_DB}", str(dump)]
    phases: dict[str, float] = {}

    def bare() -> None:
        t0 = time.monotonic()
        subprocess.run(createdb, env=env, check=True)
        t1 = time.monotonic()
        subprocess.run(pg_restore, env=env, check=True)
        phases.update(createdb=t1 - t0, pg_restore=time.monotonic() - t1)

    try:
        wall, _, cpu = measure(bare, sampler)
        size = database_size(admin.with_database(BARE_RESTORE_DB))
    finally:
        drop_database(admin, BARE_RESTORE_DB)  # not timed
    return {"wall": wall, **phases, "restored_size": size, "cpu": cpu}


def fetch_kept_dump(store: Any, policy: Any, key: Any, backup_set_id: str, workdir: Path) -> Any:
    """The decrypted plain archive the restore test restores, kept for the bare side (not timed)."""
    from hms_dr import restore
    from hms_dr.catalog import find_set
    from hms_dr.manifest import BackupKind

    backup_set = find_set(store, policy.cluster.name, BackupKind.LOGICAL, backup_set_id)
    return restore.fetch_for_restore(store, backup_set, key, workdir / "kept")


def clean_restore_target(admin: Any) -> None:
    """Scratch and bare databases an interrupted earlier run left on the bench restore target."""
    from hms_dr.database import connect
    from hms_dr.scratch.database import ScratchDatabaseKind, drop_scratch_database

    with connect(admin) as connection:
        names = [
            r[0]
            for r in connection.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s OR datname = %s",
                (ScratchDatabaseKind.RESTORE_TEST.prefix + "%", BARE_RESTORE_DB),
            ).fetchall()
        ]
    for name in names:
        print(f"dropping {name}, left on the restore target by an interrupted run")
        if name == BARE_RESTORE_DB:
            drop_database(admin, name)
        else:
            drop_scratch_database(admin, name)


# -- S3 copies (offsite_copy_throughput.py, scaling.py) -----------------------------------------


def plain_s3_client(endpoint_url: str) -> Any:
    """A boto3 client for a moto server started by a bench (any credentials do)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def bare_s3_copy(
    source: Any, source_bucket: str, destination: Any, bucket: str, keys: Sequence[str], *, part_mib: int, prove: bool
) -> None:
    """GET stream -> s3transfer upload, as `aws s3 cp s3://a/k - | aws s3 cp - s3://b/k` does (10
    threads, multipart at ``part_mib``), per key; with ``prove``, every copy read back and hashed
    (sha256): the proof the offsite sync gives, done by hand."""
    import hashlib

    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=part_mib << 20, multipart_chunksize=part_mib << 20, max_concurrency=10)
    for key in keys:
        body = source.get_object(Bucket=source_bucket, Key=key)["Body"]
        destination.upload_fileobj(body, bucket, key, Config=config)
        if prove:
            digest = hashlib.sha256()
            stream = destination.get_object(Bucket=bucket, Key=key)["Body"]
            while chunk := stream.read(4 << 20):
                digest.update(chunk)


def empty_and_drop_bucket(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
