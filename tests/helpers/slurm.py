"""A throw-away single-node SLURM cluster on loopback, from Debian's ``slurmctld``, ``slurmd`` and ``munge``.

Everything (configuration, keys, sockets, state, spool, logs) lives under one temporary folder; the daemons
listen on free loopback ports and are stopped by their process ids, so a test leaves nothing behind.
Process tracking by ``/proc`` (``proctrack/linuxproc``) and no task plugin (``task/none``) let it run as
root inside a container without cgroups or systemd.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel")

DISTRIBUTED_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


def missing_requirements() -> str | None:
    """Why a local cluster cannot start here, or None when it can."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        return f"SLURM/munge programs not installed: {', '.join(missing)} (apt-get install slurmctld slurmd munge)"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd runs jobs as their submitting user)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _slurm_conf(root: Path, host: str, cpus: int) -> str:
    ctld_port, slurmd_port = _free_ports(2)
    return f"""\
ClusterName=nowcasttest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


class LocalSlurmCluster:
    """Handles of a running cluster: ``env`` for the client commands and :meth:`run` to call them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Without the rendezvous variables that in-process ddp_spawn tests leave in os.environ: a leaked
        # MASTER_PORT would give every job the same port (Lightning's SLURM environment prefers it).
        inherited = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_VARIABLES}
        self.env = dict(inherited, SLURM_CONF=str(root / "slurm.conf"))
        self.processes: list[subprocess.Popen] = []

    def run(self, *command: str, check: bool = True) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr}\n{self.logs()}")
        return result.stdout

    def logs(self) -> str:
        """The tails of the daemon logs, for failure messages."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(parts)

    def _start(self, *command: str) -> None:
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, start_new_session=True))

    def start(self, cpus: int) -> None:
        root, host = self.root, socket.gethostname().split(".")[0]
        for folder in ("munge", "state", "spool"):
            (root / folder).mkdir(mode=0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (root / "slurm.conf").write_text(_slurm_conf(root, host, cpus))
        self._start("munged", "--foreground", "--force", f"--key-file={key}",
                    f"--socket={root}/munge/munge.socket", f"--pid-file={root}/munge/munged.pid",
                    f"--log-file={root}/munged.log", f"--seed-file={root}/munge/munged.seed")
        self._wait(lambda: (root / "munge" / "munge.socket").exists(), "munged socket")
        self._start("slurmctld", "-D", "-i", "-f", str(root / "slurm.conf"))
        self._start("slurmd", "-D", "-f", str(root / "slurm.conf"), "-N", host)
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%T", check=False).strip() in ("idle", "mixed"),
                   "an idle node")

    def _wait(self, ready, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self.processes):
                break
            time.sleep(0.5)
        raise RuntimeError(f"local SLURM cluster: no {what} after {timeout:.0f} s\n{self.logs()}")

    def stop(self) -> None:
        """Cancel every job, then stop every daemon this cluster started (by pid) and wait for them."""
        if self.processes and (self.root / "slurm.conf").exists():
            self.run("scancel", "--full", "--user=root", check=False)
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for pid in self.leftover_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        _reap_orphans()

    def leftover_pids(self) -> list[int]:
        """Processes still alive that were started by this cluster's daemons (e.g. ``slurmstepd``), found by
        the ``SLURM_CONF`` of this cluster in their environment."""
        marker = f"SLURM_CONF={self.root}/slurm.conf".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids


PR_SET_CHILD_SUBREAPER = 36


def _set_child_subreaper(on: bool) -> None:
    """Orphans of our descendants (``slurmstepd`` daemonises) become our children, so we can reap them
    instead of leaving zombies to an init process that may never reap."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _reap_orphans() -> None:
    """Reap exited ``slurmstepd``/``slurmd`` processes re-parented to this process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and fields[0] == "Z" and name.startswith("slurm"):
            os.waitpid(int(entry.name), os.WNOHANG)


@contextmanager
def local_slurm_cluster(root: Path, *, cpus: int = 2) -> Iterator[LocalSlurmCluster]:
    """Start munged, slurmctld and slurmd under ``root`` (created, then removed); stop them on exit."""
    root.mkdir(parents=True)
    cluster = LocalSlurmCluster(root)
    _set_child_subreaper(True)
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_on_sigterm)  # so a killed test still cleans up
    try:
        cluster.start(cpus)
        yield cluster
    finally:
        cluster.stop()
        _set_child_subreaper(False)
        signal.signal(signal.SIGTERM, previous_sigterm)
        shutil.rmtree(root, ignore_errors=True)


def _raise_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt("SIGTERM while a local SLURM cluster was running")
