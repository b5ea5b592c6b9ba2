"""A real SMB share on this machine, for tests: Samba's ``smbd`` serving a local folder on
127.0.0.1 (a free port), mounted through ``smbnetfs`` (a FUSE file system over libsmbclient,
Samba's own client library). Each mount is a client of its own, with its own SMB connection:
one per "PC". There is no ``cifs`` kernel module here, and nothing here is a mock: every file
operation on a mount goes over SMB3 to ``smbd``, which does it on the folder it serves.

Also the programs the tests run as separate processes (``python -m tests.smb_share ...``):

- ``land PRJ RESULTS SCRATCH READY GO PLAN...``: a PC landing plans (``run_plan``, fake engine);
  touches READY once imported, waits for GO, prints one JSON line per plan.
- ``serve PRJ RESULTS SCRATCH``: a PC that lands each plan id read from stdin (one JSON line each).
- ``read RESULTS OUT STOP``: a PC reading the study in a loop (``open_results``, ``max_depth`` of
  every plan), one JSON line per read into OUT, until STOP exists (then once more).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

SMBD = "/usr/sbin/smbd"
INSTALL = ("run .ci/run (it installs them), or: apt-get install -y samba smbnetfs")


def missing() -> str | None:
    """Why this machine cannot serve and mount an SMB share, or None."""
    if not sys.platform.startswith("linux"):
        return "the SMB share tests need Linux (smbd and a FUSE SMB client)"
    lacking = [name for name, path in (("smbd (Debian package samba)", SMBD if os.path.exists(SMBD) else None),
                                        ("smbnetfs", shutil.which("smbnetfs")), ("umount", shutil.which("umount")))
               if not path]
    return f"not installed: {', '.join(lacking)}; {INSTALL}" if lacking else None


def cannot_mount() -> str | None:
    """Why FUSE mounts are impossible here (a reason to skip), or None."""
    if os.geteuid() != 0:
        return "serving and mounting an SMB share here needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse: FUSE mounts are impossible on this machine"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05, explain=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{explain()}")
        time.sleep(poll)


def _stop_group(p: subprocess.Popen, timeout: float = 20) -> None:
    """End a process started in a session of its own, and everything in its process group."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # children still in the group (smbd's, smbnetfs's)
    except (ProcessLookupError, PermissionError):
        pass
    p.wait(timeout=timeout)


class Mount:
    """One SMB client (an smbnetfs process and its children) and the share's folder through it."""

    def __init__(self, name: str, mountpoint: Path, path: Path, proc: subprocess.Popen, log: Path):
        self.name, self.mountpoint, self.path, self.proc, self.log = name, mountpoint, path, proc, log

    def kill(self) -> None:
        """The client dies at once (SIGKILL, its whole process group): its SMB connection drops."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=20)

    def unmount(self) -> None:
        if os.path.ismount(self.mountpoint) or self._dead_mount():
            r = subprocess.run(["umount", str(self.mountpoint)], check=False, capture_output=True, timeout=60)
            if r.returncode != 0:  # still in use (or its client is dead): detach it now
                r = subprocess.run(["umount", "-l", str(self.mountpoint)], check=False, capture_output=True,
                                   timeout=60)
            if r.returncode != 0:
                raise AssertionError(f"cannot unmount {self.mountpoint}: {r.stderr.decode(errors='replace')}")
        _stop_group(self.proc)

    def _dead_mount(self) -> bool:
        try:
            os.stat(self.mountpoint)
            return False
        except OSError:  # "Transport endpoint is not connected": a mount whose client died
            return True


class SmbShare:
    """``smbd`` serving ``folder/share`` as ``\\\\127.0.0.1:<port>\\results``; :meth:`mount` gives
    each PC a client of its own. ``strict_rename``: refuse to rename a folder while any client
    has a file in it open, as a Windows file server does (Samba's default only checks the
    renaming client's own open files)."""

    SHARE = "results"

    def __init__(self, folder: Path, *, strict_rename: bool = True):
        self.folder = Path(folder)
        self.served = self.folder / "share"  # the folder smbd serves: what is really on the "server"
        self.served.mkdir(parents=True, exist_ok=True)
        # Samba's sockets live under its state folders: kept short (a socket's path has <108 bytes)
        self.state = Path(tempfile.mkdtemp(prefix="smb-", dir="/tmp"))
        self.strict_rename = strict_rename
        self.port = 0
        self.smbd: subprocess.Popen | None = None
        self.mounts: list[Mount] = []

    # ------------------------------------------------------------------ server

    def _server_conf(self) -> Path:
        s = self.state / "server"
        for d in ("private", "lock", "state", "cache", "pid", "ncalrpc", "binddns"):
            (s / d).mkdir(parents=True, exist_ok=True)
        conf = s / "smb.conf"
        conf.write_text(f"""[global]
  netbios name = RESULTSRV
  workgroup = WORKGROUP
  server role = standalone server
  smb ports = {self.port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  disable spoolss = yes
  load printers = no
  printcap name = /dev/null
  rpc start on demand helpers = no
  map to guest = Bad User
  guest account = root
  passdb backend = tdbsam:{s}/passdb.tdb
  private dir = {s}/private
  lock directory = {s}/lock
  state directory = {s}/state
  cache directory = {s}/cache
  pid directory = {s}/pid
  ncalrpc dir = {s}/ncalrpc
  binddns dir = {s}/binddns
  log file = {s}/log.%m
  log level = 1
  strict rename = {"yes" if self.strict_rename else "no"}
[{self.SHARE}]
  path = {self.served}
  read only = no
  guest ok = yes
  guest only = yes
  force user = root
""")
        return conf

    def start(self) -> SmbShare:
        reason = missing()
        if reason:
            raise AssertionError(reason)
        for _ in range(5):  # a free port can be taken between finding it and smbd binding it
            self.port = free_port()
            conf = self._server_conf()
            log = open(self.state / "smbd.out", "ab")
            self.smbd = subprocess.Popen([SMBD, "--foreground", "--no-process-group", "--debug-stdout",
                                          f"--configfile={conf}"], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.smbd.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            _stop_group(self.smbd)
        raise AssertionError(f"smbd did not start listening on 127.0.0.1:{self.port}:\n{self.tails()}")

    def stop(self) -> None:
        errors = []
        for m in self.mounts:  # clients first: with the server gone, their calls would wait out timeouts
            try:
                m.unmount()
            except Exception as e:  # noqa: BLE001 - every mount is tried
                errors.append(f"{m.mountpoint}: {e}")
        if self.smbd is not None:
            _stop_group(self.smbd)
        left = self.processes()
        for p in left:
            try:
                p.kill()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(self.state, ignore_errors=True)
        if errors or left:
            raise AssertionError(f"SMB share not cleanly stopped: {errors}; processes left: "
                                 f"{[(p.pid, p.info.get('cmdline')) for p in left]}")

    def processes(self):
        """smbd and smbnetfs processes of this share still alive (none after :meth:`stop`)."""
        import psutil

        found = []
        for p in psutil.process_iter(["cmdline", "environ", "status"]):
            try:
                if p.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                cmd = " ".join(p.info["cmdline"] or [])
                home = (p.info["environ"] or {}).get("HOME", "")
                if str(self.state) in cmd or (home.startswith(str(self.state))):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return found

    # ------------------------------------------------------------------ clients

    def mount(self, name: str) -> Mount:
        """A new SMB client (smbnetfs) mounted at ``folder/mnt-<name>``; returns it, ``.path``
        being the share's root through it."""
        home = self.state / f"c-{name}"
        conf_dir = home / ".smb"
        conf_dir.mkdir(parents=True)
        c = home / "samba"
        for d in ("lock", "state", "cache", "private"):
            (c / d).mkdir(parents=True)
        # libsmbclient reads ~/.smb/smb.conf: its own state folders, no NetBIOS, SMB2 or later
        (conf_dir / "smb.conf").write_text(f"""[global]
  client min protocol = SMB2
  disable netbios = yes
  name resolve order = host
  lock directory = {c}/lock
  state directory = {c}/state
  cache directory = {c}/cache
  private dir = {c}/private
""")
        (conf_dir / "smbnetfs.conf").write_text(
            'auth "guest" ""\n'
            'smb_query_browsers "false"\n'  # no network browsing: the server is named in the path
            'use_libsecret "false"\n'
            'neg_cache_timeout 100\n'  # failures remembered 0.1 s, not 3 ("neg_cache false" hangs it)
            'stat_workaround_enable_default_entries "false"\n'  # no file names hidden
            'stat_workaround_depth 0\n'
        )
        for f in conf_dir.iterdir():
            f.chmod(0o600)  # smbnetfs ignores auth lines in a file others can read
        mountpoint = self.folder / f"mnt-{name}"
        mountpoint.mkdir(parents=True)
        log = self.state / f"smbnetfs-{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(["smbnetfs", str(mountpoint), "-f"], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**os.environ, "HOME": str(home)},
                                    start_new_session=True)
        # the server and its port are a path on the mount: <mountpoint>/<host>:<port>/<share>
        m = Mount(name, mountpoint, mountpoint / f"127.0.0.1:{self.port}" / self.SHARE, proc, log)
        self.mounts.append(m)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"smbnetfs for {name} exited with {proc.returncode}:\n{self.tails()}")
            try:
                return os.path.ismount(mountpoint) and os.path.isdir(m.path) and os.listdir(m.path) is not None
            except OSError:
                return False

        wait_for(ready, 60, f"the SMB mount {mountpoint}", poll=0.1, explain=self.tails)
        return m

    def tails(self, lines: int = 20) -> str:
        out = []
        for log in sorted([*self.state.glob("*.out"), *self.state.glob("*.log"), *self.state.glob("server/log.*")]):
            text = log.read_text(errors="replace").splitlines()
            out += [f"----- {log.name} -----", *text[-lines:]]
        return "\n".join(out)


# ---------------------------------------------------------------------- what the tests check


def plan_digest(values) -> list:
    """A plan's ``max_depth`` as [non-null cells, SHA-256 of its sorted values]: the same for the
    same results whatever the order of cells or the other plans read with it."""
    import numpy as np

    v = np.asarray(values, dtype="float64").ravel()
    ok = v[~np.isnan(v)]
    if not np.isfinite(ok).all():
        raise AssertionError(f"max_depth holds infinite values: {ok[~np.isfinite(ok)][:5]}")
    return [int(ok.size), hashlib.sha256(np.sort(ok).tobytes()).hexdigest()[:16]]


def read_study(results: Path) -> dict:
    """What another PC sees of the study: every plan's digest of ``max_depth`` computed from
    ``open_results``, and the status in each summary's ``result.json``. Raises what they raise."""
    from dask_hecras import records
    from dask_hecras.results import open_results, summary_files

    ds = open_results(results)
    depth = ds["max_depth"].compute()
    plans = [str(p) for p in depth["plan"].values]
    files = summary_files(results)  # after: so that every plan read has its record here too
    statuses = {}
    for f in files:
        plan = f.parent.name.split(records.BESIDE)[0]
        data = records.read_json(f.parent / "result.json") or {}
        statuses.setdefault(plan, []).append(data.get("status"))
    return {"plans": {p: plan_digest(depth.isel(plan=i).values) for i, p in enumerate(plans)},
            "order": plans, "statuses": statuses, "files": [str(f) for f in files]}


# ---------------------------------------------------------------------- programs


def _land(argv: list[str]) -> int:
    prj, results, scratch, ready, go, *plan_ids = argv
    os.environ["DASK_HECRAS__SCRATCH"] = scratch
    import dask.config

    from dask_hecras.project import Project

    project = Project(prj)
    Path(ready).touch()
    wait_for(lambda: os.path.exists(go), 300, "the go file")
    with dask.config.set({"hecras.scratch": scratch}):
        for pid in plan_ids:
            _land_one(project, pid, scratch, results)
    return 0


def _land_one(project, pid: str, scratch, results) -> None:
    """Run and land one plan, and say how it went as one JSON line."""
    from dask_hecras.pipeline import run_plan

    t = time.monotonic()
    r = run_plan(project.plan(pid), engine="fake", scratch=scratch, results_dir=results, raise_retryable=False)
    print(json.dumps({"plan": pid, "status": r.status, "reason": r.reason, "folder": str(r.folder),
                      "summary": str(r.summary), "seconds": round(time.monotonic() - t, 2)}), flush=True)


def _serve(argv: list[str]) -> int:
    prj, results, scratch = argv
    os.environ["DASK_HECRAS__SCRATCH"] = scratch
    import dask.config

    from dask_hecras.project import Project

    project = Project(prj)
    print(json.dumps({"ready": True}), flush=True)
    with dask.config.set({"hecras.scratch": scratch}):
        for line in sys.stdin:
            pid = line.strip()
            if not pid:
                continue
            _land_one(project, pid, scratch, results)
    return 0


def _read(argv: list[str]) -> int:
    results, out, stop = argv
    with open(out, "a") as f:
        last = False
        while True:
            last = os.path.exists(stop)
            t = time.time()
            row: dict = {"t": t}
            try:
                row.update(read_study(Path(results)))
            except FileNotFoundError as e:
                row["error"], row["kind"] = str(e), "FileNotFoundError"
                time.sleep(0.05)  # nothing landed yet: no need to spin
            except Exception as e:  # noqa: BLE001 - what the test checks
                row["error"], row["kind"] = "".join(traceback.format_exception(e)), type(e).__name__
            row["seconds"] = round(time.time() - t, 3)
            f.write(json.dumps(row) + "\n")
            f.flush()
            if last:
                return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    sys.exit({"land": _land, "serve": _serve, "read": _read}[command](rest))
