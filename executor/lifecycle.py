"""How a run ends, whatever ends it: the run-folder lock, signals, the process tree, a full disk.

Runner side (``sftplan run``, executor/run.py; nothing heavy imported):

- ``RunLock``: an exclusive ``fcntl.flock`` on ``RUN_DIR/run.lock`` for the life of the run (also
  handed to the launcher, so it is held until the launcher is gone). A second ``sftplan run`` on the
  same folder refuses in one line naming the holder's pid.
- The launcher starts in its own session (process group) with ``PR_SET_PDEATHSIG=SIGTERM`` (Linux):
  if ``sftplan run`` dies, even by SIGKILL, the launcher is told to stop. ``sftplan run`` is a child
  subreaper (``PR_SET_CHILD_SUBREAPER``): workers orphaned by a killed launcher are re-parented to
  it, so it sees and reaps them instead of leaving them to train on.
- ``Stopper``: SIGINT, SIGTERM and SIGHUP all mean "stop at a safe point". The first one sends
  SIGTERM to every worker (the processes of the tree that run executor.train); if they have not
  ended after ``SFTPLAN_STOP_GRACE_S`` (120 s) the whole tree is sent SIGTERM, then SIGKILL 30 s
  later. A second signal escalates at once.

Worker side (executor/train.py, every rank):

- ``worker_start()``: SIGTERM/SIGHUP/SIGINT set a flag instead of killing the process, and the
  worker asks for SIGTERM when its parent (the launcher) dies (``PR_SET_PDEATHSIG``), so killing
  the launcher's recorded pid never leaves workers training on.
- ``SignalStopCallback``: at every optimizer step all ranks agree (one all-reduce of a flag) whether
  any was signalled; if so every rank stops at that same step, no checkpoint is written half-way,
  the result says ``stopped`` and the last complete checkpoint is where a rerun resumes.
- ``disk_full(exc)``: recognises ENOSPC however the library wrapped it (OSError errno 28, or the
  RuntimeError torch.save raises), for a one-line failure.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import threading
import time
from pathlib import Path

from advisor.errors import UserError

STOP_GRACE_S = float(os.environ.get("SFTPLAN_STOP_GRACE_S", "120"))
KILL_AFTER_S = 30.0
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# --------------------------------------------------------------------------- lock


class RunLock:
    """An exclusive, non-blocking flock on RUN_DIR/run.lock. The file holds the holder's pid."""

    def __init__(self, run_dir: Path):
        from executor import names

        self.path = Path(run_dir) / names.RUN_LOCK
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{self.path.parent}: another `sftplan run` holds this run folder (pid {holder}, lock "
                            f"{self.path}); wait for it to end or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------- process tree


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux); True when it took effect."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask for ``sig`` when the parent dies (Linux). Usable as a Popen ``preexec_fn``."""
    _prctl(_PR_SET_PDEATHSIG, int(sig))


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; empty where there is none)."""
    ppids = _ppids()
    children: dict[int, list[int]] = {}
    for child, parent in ppids.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def is_worker(pid: int) -> bool:
    """A process started by a launcher for one rank (its environment holds LOCAL_RANK)."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"executor.train" in cmd and (b"\0LOCAL_RANK=" in b"\0" + env)


def workers(launcher_pid: int) -> list[int]:
    """The worker processes of a launched run: ranks under torchrun/deepspeed, else the launched process."""
    ranks = [p for p in descendants(launcher_pid) if is_worker(p)]
    return ranks or [launcher_pid]


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def signal_tree(launcher_pid: int, sig: int) -> None:
    """``sig`` to the launcher's process group and to every descendant (workers live in sessions of their own)."""
    tree = descendants(launcher_pid)
    try:
        os.killpg(launcher_pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    signal_pids(tree, sig)


def reap_orphans(timeout_s: float) -> list[int]:
    """Wait for re-parented children (orphans of the launcher) to end; SIGKILL those still there after
    ``timeout_s``. Returns the pids that had to be killed."""
    deadline = time.monotonic() + timeout_s
    killed: list[int] = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return killed
        if pid:
            continue
        if time.monotonic() > deadline:
            left = [p for p, pp in _ppids().items() if pp == os.getpid()]
            signal_pids(left, signal.SIGKILL)
            killed += left
            deadline = time.monotonic() + 10
        time.sleep(0.05)


class Stopper:
    """SIGINT/SIGTERM/SIGHUP while a launcher runs: stop the workers at a safe point, escalate if they do not."""

    def __init__(self, launcher_pid: int, *, say=print):
        self.pid, self.say = launcher_pid, say
        self.received: str | None = None
        self._count = 0
        self._previous = {}
        self._timers: list[threading.Timer] = []

    def __enter__(self) -> "Stopper":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        for t in self._timers:
            t.cancel()

    def _later(self, delay: float, fn) -> None:
        t = threading.Timer(delay, fn)
        t.daemon = True
        t.start()
        self._timers.append(t)

    def _handle(self, signum, _frame) -> None:
        self._count += 1
        name = signal.Signals(signum).name
        if self._count == 1:
            self.received = name
            self.say(f"sftplan: {name}: stopping the workers at the next step (last complete checkpoint kept); "
                     "send it again to kill them at once")
            signal_pids(workers(self.pid), signal.SIGTERM)
            self._later(STOP_GRACE_S, self._terminate)
        elif self._count == 2:
            self.say(f"sftplan: {name} again: terminating the run's processes")
            self._terminate()
        else:
            signal_tree(self.pid, signal.SIGKILL)

    def _terminate(self) -> None:
        signal_tree(self.pid, signal.SIGTERM)
        self._later(KILL_AFTER_S, lambda: signal_tree(self.pid, signal.SIGKILL))


# --------------------------------------------------------------------------- worker side

_signalled: str | None = None


def worker_signalled() -> str | None:
    return _signalled


def _worker_handler(signum, _frame) -> None:
    global _signalled
    if _signalled is None:
        _signalled = signal.Signals(signum).name
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"[sftplan] {_signalled}: stopping at the next step", flush=True)


def worker_start() -> None:
    """Every rank, first thing: stop signals set a flag; the launcher's death sends SIGTERM; SIGUSR1 prints every
    thread's Python stack to stderr, i.e. the run's log (faulthandler), for a worker that seems stuck."""
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _worker_handler)
    runner = os.environ.get("SFTPLAN_RUNNER_PID")
    if os.environ.get("LOCAL_RANK") is not None:  # under a launcher: die with it
        die_with_parent(signal.SIGTERM)
        if os.getppid() in (1, int(runner) if runner and runner.isdigit() else -1):
            _worker_handler(signal.SIGTERM, None)  # the launcher was already gone before we asked


def signal_stop_callback():
    """A TrainerCallback: every rank stops at the same step once any rank was signalled."""
    from transformers import TrainerCallback

    from executor.train_callbacks import any_rank, is_rank0

    class SignalStopCallback(TrainerCallback):
        stopped_by: str | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if any_rank(_signalled is not None):
                control.should_training_stop = True
                control.should_save = False  # a mid-epoch checkpoint would not be an epoch checkpoint
                self.stopped_by = _signalled or "a signal on another rank"
                if is_rank0():
                    print(f"[sftplan] stopped at step {state.global_step} ({self.stopped_by}); rerun resumes from "
                          "the last complete checkpoint", flush=True)

        def on_epoch_end(self, args, state, control, **kwargs):
            # Trainer leaves the epoch loop and would save an "epoch" checkpoint (and score it) at the stop step
            if self.stopped_by:
                control.should_save = False

    return SignalStopCallback()


LOW_DISK_BYTES = 256 * 2**20


def disk_full(exc: BaseException, where: Path | None = None) -> bool:
    """True when ``exc`` (or what it wraps) is a full disk: ENOSPC/EDQUOT, or a failed write (torch.save's
    "file write failed" names no errno) while the file system holding ``where`` has under 256 MiB free."""
    seen, write_failed = 0, False
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        write_failed = write_failed or "write failed" in text or "failed writing" in text
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    if write_failed and where is not None:
        import shutil

        try:
            return shutil.disk_usage(where).free < LOW_DISK_BYTES
        except OSError:
            return False
    return False


_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "DistNetworkError", "NCCL communicator was aborted",
              "Broken pipe", "ProcessGroupNCCL's watchdog", "Socket Timeout", "Connection refused")


def peer_lost(exc: BaseException) -> bool:
    """True when ``exc`` is a collective failing because another rank went away (gloo/NCCL/the store)."""
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ in ("DistNetworkError", "DistBackendError") or any(t in str(exc) for t in _PEER_LOST):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def guarded(main, run_dir_of=None) -> int:
    """Run a worker's ``main``: a refusal is one line and exit 2; a full disk is one line and exit 5 (rank 0
    removes the checkpoint it was writing, so the last complete one is what a rerun resumes from)."""
    from advisor.errors import UserError

    try:
        return main()
    except UserError as exc:
        print(f"sftplan: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - only a full disk / a lost peer become one line; the rest re-raises
        run_dir = run_dir_of() if run_dir_of else None
        if peer_lost(exc):
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            print(f"sftplan: rank {os.environ.get('RANK', '?')} lost contact with another rank (a node or worker "
                  f"died, or the network failed): {first}; the last complete checkpoint is kept, rerun every node "
                  "to resume", file=sys.stderr, flush=True)
            return 4
        if not disk_full(exc, run_dir):
            raise
        removed = []
        if run_dir is not None and int(os.environ.get("RANK", "0")) == 0:
            import shutil

            for ck in sorted(Path(run_dir).glob("checkpoint-*")):
                if ck.is_dir() and not (ck / "COMPLETE").is_file():
                    shutil.rmtree(ck, ignore_errors=True)
                    removed.append(ck.name)
        print(f"sftplan: no space left on device under {run_dir or 'the run folder'}"
              + (f" (removed the incomplete {', '.join(removed)})" if removed else "")
              + "; the last complete checkpoint is kept: free space and rerun to resume", file=sys.stderr, flush=True)
        return 5  # not 3: the OOM guard's code
