"""The fault matrix of issue 11: how many ways of ending a run badly the executor survives.

    python benchmarks/fault_matrix.py                 # quick matrix (tiny model, CPU, a few minutes)
    python benchmarks/fault_matrix.py --full          # every strategy and kill point (much longer)
    python benchmarks/fault_matrix.py --groups kills,signals

Groups (each case is real: processes started as a user starts them, real signals, real byte edits):

- kills:       SIGKILL of the whole process tree at a kill point (mid-epoch 1, while a checkpoint is
               being written, mid-epoch 2) x strategy (single; --full adds ddp, fsdp, zero3 with 2
               processes), then `sftplan run` again. Survived: the rerun finishes and every epoch's
               golden loss equals the uninterrupted reference run's (|diff| < 1e-6).
- signals:     SIGTERM, SIGHUP, SIGINT to `sftplan run` mid-epoch 2, plus SIGKILL of the launcher pid
               recorded in run.json (2 workers). Survived: no worker left training, run.json says how it
               ended (stopped / failed, pid cleared), report.md written, and the rerun finishes with the
               reference's golden losses.
- lifecycle:   two `sftplan run` at the same instant (one trains, the other refuses in one line); a disk
               that fills mid-run (root only: a small tmpfs; one line, status failed, report written,
               last complete checkpoint kept).
- corruptions: byte edits of a finished run (newest checkpoint's model.safetensors overwritten / truncated,
               gate.json malformed, run.json malformed). Survived: `sftplan promote` / `sftplan run` exit
               non-zero with one line naming the file, never promoting or resuming from the damaged file.
- bad inputs:  data rows and plans a user gets wrong. Survived: exit 2, one line (or one count line plus
               one `file:line: reason` per bad row), no traceback.

Prints one line per case and `survived/tried` per group.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "executor"))

ROWS, MICRO, EPOCHS = 32, 4, 2
STEPS = ROWS // MICRO
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


# --------------------------------------------------------------------------- helpers


def sftplan(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "advisor", *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def start(plan_path, run_dir):
    return subprocess.Popen([sys.executable, "-m", "advisor", "run", str(plan_path), "--out", str(run_dir)], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def last_step(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    return max((json.loads(l)["step"] for l in path.read_text().splitlines() if l.endswith("}")), default=0)


def trainers_of(run_dir):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        launcher = any(a.endswith((b"/torchrun", b"/deepspeed")) or a == b"deepspeed.launcher.launch" for a in args)
        if b"executor.train" in args and str(run_dir).encode() in b" ".join(args) and not launcher and state != "Z":
            found.append(int(entry))
    return found


def wait_until(cond, proc, timeout=300):
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None or time.time() > deadline:
            return False
        time.sleep(0.01)
    return True


def one_line(stderr: str) -> bool:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    if not lines or "Traceback" in stderr:
        return False
    if len(lines) == 1:
        return True
    head = lines[0]  # "N bad training rows in FILE:" then one "FILE:line: reason" per row
    return " bad " in head and all(":" in l for l in lines[1:])


def golden_losses(run_dir):
    gate = json.loads((run_dir / "gate.json").read_text())
    return [round(e["score"]["loss"], 9) for e in gate["epochs"]]


def same_losses(a, b):
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return


class Matrix:
    def __init__(self):
        self.groups: dict[str, list[tuple[str, bool, str]]] = {}

    def record(self, group, name, ok, why=""):
        self.groups.setdefault(group, []).append((name, ok, why))
        print(f"  [{'survived' if ok else 'FAILED  '}] {group}: {name}" + (f" -- {why}" if why and not ok else ""),
              flush=True)

    def case(self, group, name, fn):
        try:
            ok, why = fn()
        except Exception as exc:  # noqa: BLE001 - a case that crashes the harness is a failed case
            ok, why = False, f"{type(exc).__name__}: {str(exc)[:300]}"
        self.record(group, name, ok, why)

    def summary(self):
        print("\nfault matrix: survived/tried")
        total_ok = total = 0
        for group, cases in self.groups.items():
            ok = sum(1 for _, s, _ in cases if s)
            total_ok, total = total_ok + ok, total + len(cases)
            print(f"  {group:<12} {ok}/{len(cases)}")
        print(f"  {'all':<12} {total_ok}/{total}")
        return total_ok == total


# --------------------------------------------------------------------------- the groups


class Bench:
    def __init__(self, work: Path, full: bool):
        from executor import cpu_dist  # noqa: F401  (fail early without the train extra)
        from tinyplan import approved_plan_file, tiny_assets, tiny_plan

        self.work, self.full = work, full
        self.assets = tiny_assets(work, n_train=ROWS, n_golden=4)
        self._approved, self._tiny_plan = approved_plan_file, tiny_plan
        self.refs: dict[str, list[float]] = {}
        self.n = 0

    def plan(self, strategy="single", gpus=1, epochs=EPOCHS, **kw):
        self.n += 1
        where = self.work / f"p{self.n}"
        where.mkdir()
        return self._approved(where, self._tiny_plan(self.assets, strategy=strategy, num_gpus=gpus, epochs=epochs,
                                                     micro_batch_size=MICRO // gpus, **kw))

    def fresh(self, name):
        self.n += 1
        return self.work / f"{name}-{self.n}"

    def reference(self, strategy, gpus):
        if strategy not in self.refs:
            run_dir = self.fresh(f"ref-{strategy}")
            proc = sftplan("run", self.plan(strategy, gpus), "--out", run_dir)
            if proc.returncode != 0:
                raise RuntimeError(f"reference {strategy} run failed: {proc.stderr[-500:]}")
            self.refs[strategy] = golden_losses(run_dir)
        return self.refs[strategy]

    # ---- kills
    def kill_case(self, strategy, gpus, point):
        ref = self.reference(strategy, gpus)
        plan_path, run_dir = self.plan(strategy, gpus), self.fresh(f"kill-{strategy}-{point}")
        proc = start(plan_path, run_dir)
        conds = {"mid-epoch-1": lambda: last_step(run_dir) >= STEPS // 2,
                 "checkpoint-write": lambda: (run_dir / f"checkpoint-{STEPS}").is_dir()
                 and not (run_dir / f"checkpoint-{STEPS}" / "COMPLETE").exists(),
                 "mid-epoch-2": lambda: last_step(run_dir) >= STEPS + STEPS // 2}
        reached = wait_until(conds[point], proc)
        try:
            info = json.loads((run_dir / "run.json").read_text())
            os.killpg(info["pid"], signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass
        for pid in trainers_of(run_dir):
            os.kill(pid, signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reap()
        if not reached:
            return False, f"kill point {point} not reached"
        again = sftplan("run", plan_path, "--out", run_dir)
        if again.returncode != 0:
            return False, f"rerun exit {again.returncode}: {again.stderr.strip()[-300:]}"
        got = golden_losses(run_dir)
        return same_losses(got, ref), f"golden losses {got} vs reference {ref}"

    # ---- signals
    def signal_case(self, sig, strategy="single", gpus=1):
        ref = self.reference(strategy, gpus)
        plan_path, run_dir = self.plan(strategy, gpus), self.fresh(f"sig-{sig.name}")
        proc = start(plan_path, run_dir)
        if not wait_until(lambda: last_step(run_dir) >= STEPS + 2, proc):
            proc.kill()
            return False, "epoch 2 not reached"
        proc.send_signal(sig)
        try:
            proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return False, "sftplan run did not end within 180 s of the signal"
        info = json.loads((run_dir / "run.json").read_text())
        checks = {"exit 128+sig": proc.returncode == 128 + sig, "status stopped": info.get("status") == "stopped",
                  "pid cleared": info.get("pid") is None, "report": (run_dir / "report.md").is_file(),
                  "no orphans": not trainers_of(run_dir)}
        bad = [k for k, v in checks.items() if not v]
        if bad:
            return False, f"{', '.join(bad)} (exit {proc.returncode}, status {info.get('status')})"
        again = sftplan("run", plan_path, "--out", run_dir)
        got = golden_losses(run_dir) if again.returncode == 0 else []
        return same_losses(got, ref), f"rerun exit {again.returncode}, losses {got} vs {ref}"

    def kill_recorded_pid(self):
        plan_path, run_dir = self.plan("ddp", 2, epochs=4), self.fresh("kill-pid")
        proc = start(plan_path, run_dir)
        if not wait_until(lambda: last_step(run_dir) >= 3, proc):
            proc.kill()
            return False, "training not reached"
        os.kill(json.loads((run_dir / "run.json").read_text())["pid"], signal.SIGKILL)
        deadline = time.time() + 120
        while trainers_of(run_dir) and time.time() < deadline:
            time.sleep(0.1)
        left = trainers_of(run_dir)
        proc.communicate(timeout=120)
        info = json.loads((run_dir / "run.json").read_text())
        ok = not left and info.get("pid") is None and info.get("status") in ("stopped", "failed")
        return ok, f"left training: {left}, status {info.get('status')}"

    # ---- lifecycle
    def lock_case(self):
        plan_path, run_dir = self.plan(epochs=1), self.fresh("lock")
        a, b = start(plan_path, run_dir), start(plan_path, run_dir)
        res = [(p.wait(timeout=600), *p.communicate()) for p in (a, b)]
        codes = sorted(r[0] for r in res)
        refused = [r for r in res if r[0] == 2]
        ok = codes == [0, 2] and one_line(refused[0][2]) and (run_dir / "log.txt").read_text().count("\n=== ") == 1
        return ok, f"exit codes {codes}"

    def disk_full_case(self):
        if os.geteuid() != 0:
            return None
        disk = self.fresh("disk")
        disk.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], capture_output=True).returncode:
            return None
        try:
            plan_path, run_dir = self.plan(epochs=3), disk / "run"
            proc = start(plan_path, run_dir)
            first = run_dir / f"checkpoint-{STEPS}" / "COMPLETE"
            if not wait_until(first.is_file, proc):
                return False, "first checkpoint not reached"
            with open(disk / "filler", "wb") as fh:
                fh.write(b"\0" * max(0, shutil.disk_usage(disk).free - 256 * 1024))
            out, err = proc.communicate(timeout=300)
            info = json.loads((run_dir / "run.json").read_text())
            ok = (proc.returncode == 1 and info.get("status") == "failed" and "no space left" in (info.get("error") or "")
                  and "Traceback" not in err and first.is_file() and (run_dir / "report.md").is_file())
            return ok, f"exit {proc.returncode}, status {info.get('status')}, error {info.get('error')}"
        finally:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)

    def node_dies_case(self):
        """2 "nodes" on localhost through config/node-<i>.sh; node 1 dies (all its processes): node 0 ends with one line."""
        from advisor.planfile import approve, with_hash, write_plan
        from executor.launch import free_port

        plan = self._tiny_plan(self.assets, strategy="ddp", num_gpus=2, epochs=20, micro_batch_size=2)
        plan = with_hash(plan.replace(**{"recommended": plan.recommended.replace(**{"num_nodes": 2})}))
        plan_path = self.fresh("nodes-plan.yaml")
        write_plan(approve(plan, by="fault-matrix"), plan_path)
        run_dir = self.fresh("nodes")
        if sftplan("run", plan_path, "--out", run_dir).returncode != 0:
            return False, "scripts not written"
        env = dict(ENV, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), SFTPLAN_NODE_WAIT_S="120")
        nodes = [subprocess.Popen(["bash", str(run_dir / "config" / f"node-{i}.sh")], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True) for i in (0, 1)]
        if not wait_until((run_dir / "metrics.jsonl").is_file, nodes[0]):
            for p in nodes:
                os.killpg(p.pid, signal.SIGKILL)
            return False, "training not reached"
        rank1 = [p for p in trainers_of(run_dir) if b"\0RANK=1\0" in b"\0" + Path(f"/proc/{p}/environ").read_bytes()]
        os.killpg(nodes[1].pid, signal.SIGKILL)
        for pid in rank1:
            os.kill(pid, signal.SIGKILL)
        t0 = time.time()
        try:
            nodes[0].communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(nodes[0].pid, signal.SIGKILL)
            return False, "node 0 still running 180 s after node 1 died"
        nodes[1].wait()
        info = json.loads((run_dir / "run.json").read_text())
        ok = info.get("status") == "failed" and "lost contact" in (info.get("error") or "") and not trainers_of(run_dir)
        return ok, f"node 0 ended in {time.time() - t0:.0f} s, status {info.get('status')}, error {info.get('error')}"

    # ---- corruptions
    def finished_run(self):
        if not hasattr(self, "_finished"):
            run_dir = self.fresh("finished")
            proc = sftplan("run", self.plan(), "--out", run_dir)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-500:])
            self._finished = run_dir
        copy = self.fresh("corrupt")
        shutil.copytree(self._finished, copy, symlinks=True)
        return copy

    def corrupt_case(self, how):
        run_dir = self.finished_run()
        newest = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        if how == "safetensors-overwrite-4k":
            path = newest / "model.safetensors"
            with open(path, "r+b") as fh:
                fh.seek(max(0, path.stat().st_size // 2))
                fh.write(b"\xff" * 4096)
            cmd = ("promote", run_dir, "--out", run_dir / "promoted-out")
        elif how == "safetensors-truncated":
            path = newest / "model.safetensors"
            os.truncate(path, path.stat().st_size // 3)
            cmd = ("promote", run_dir, "--out", run_dir / "promoted-out")
        elif how == "gate-json-malformed":
            path = run_dir / "gate.json"
            path.write_text(path.read_text()[: len(path.read_text()) // 2])
            cmd = ("promote", run_dir, "--out", run_dir / "promoted-out")
        else:  # run-json-malformed, then rerun
            path = run_dir / "run.json"
            path.write_text("{not json")
            cmd = ("run", run_dir / "plan.yaml", "--out", run_dir)
        proc = sftplan(*cmd)
        promoted = (run_dir / "promoted-out").exists()
        named = path.name in proc.stderr
        ok = proc.returncode != 0 and one_line(proc.stderr) and named and not promoted
        return ok, f"exit {proc.returncode}, promoted {promoted}, stderr {proc.stderr.strip()[-200:]!r}"

    # ---- bad inputs
    def bad_input_cases(self):
        d = self.fresh("bad")
        d.mkdir()
        good = json.dumps({"prompt": "p", "response": "r"})

        def data(name, text):
            (d / name).write_bytes(text.encode() if isinstance(text, str) else text)
            return d / name

        files = {
            "invalid JSON line": data("a.jsonl", good + "\n{oops\n"),
            "unknown key (inptu)": data("b.jsonl", json.dumps({"instruction": "i", "inptu": "x", "output": "o"}) + "\n"),
            "row over 1 MiB": data("c.jsonl", json.dumps({"prompt": "p", "response": "x" * (2 << 20)}) + "\n"),
            "not UTF-8": data("d.jsonl", b'{"prompt": "\xff", "response": "r"}\n'),
            "BOM inside the file": data("e.jsonl", (good + "\n").encode() + b"\xef\xbb\xbf" + good.encode() + b"\n"),
            "no rows": data("f.jsonl", "\n\n"),
            "missing answer": data("g.jsonl", json.dumps({"prompt": "p"}) + "\n"),
        }
        cases = []
        for name, path in files.items():
            cases.append((f"plan --dataset: {name}", ("plan", "--model", "8B", "--dataset", path)))
        cases += [("plan: --learning-rate inf", ("plan", "--model", "8B", "--examples", "1000", "--learning-rate", "inf")),
                  ("plan: --examples true", ("plan", "--model", "8B", "--examples", "true")),
                  ("plan: --gate-tolerance inf", ("plan", "--model", "8B", "--examples", "1000", "--gate-tolerance", "inf")),
                  ("run: no such plan", ("run", d / "nope.yaml")),
                  ("promote: not a run folder", ("promote", d))]
        out = []
        for name, args in cases:
            proc = sftplan(*args)
            out.append((name, proc.returncode == 2 and one_line(proc.stderr),
                        f"exit {proc.returncode}, stderr {proc.stderr.strip()[-200:]!r}"))
        # data edited after approval, and a prompt longer than max_seq_len: refused by the run, by file:line
        plan_path = self.plan()
        from advisor.planfile import read_plan

        train = Path(read_plan(plan_path).request.dataset.file.path)
        saved = train.read_bytes()
        train.write_bytes(saved + good.encode() + b"\n")
        proc = sftplan("run", plan_path, "--out", self.fresh("edited"))
        train.write_bytes(saved)
        out.append(("run: data changed after approval", proc.returncode == 2 and one_line(proc.stderr),
                    f"exit {proc.returncode}, {proc.stderr.strip()[-200:]!r}"))
        return out

    def long_prompt_case(self):
        n_assets = self.fresh("long")
        shutil.copytree(self.assets, n_assets)
        train = n_assets / "train.jsonl"
        with open(train, "a") as fh:
            fh.write(json.dumps({"prompt": "reverse cat dog " * 200, "response": "x"}) + "\n")
        line = len(train.read_text().splitlines())
        plan_path = self._approved(self.fresh("longplan").parent, self._tiny_plan(n_assets, epochs=1), "long.yaml")
        run_dir = self.fresh("longrun")
        proc = sftplan("run", plan_path, "--out", run_dir)
        info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
        err = info.get("error") or ""
        ok = proc.returncode != 0 and f"{train}:{line}" in err and "max_seq_len" in err and "Traceback" not in proc.stdout[-2000:].split("sftplan:")[-1]
        return ok, f"exit {proc.returncode}, error {err[:200]!r}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="every strategy and kill point")
    ap.add_argument("--groups", default="kills,signals,lifecycle,corruptions,bad-inputs")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    groups = set(args.groups.split(","))
    work = Path(tempfile.mkdtemp(prefix="sftplan-faults-"))
    started = time.time()
    m = Matrix()
    try:
        b = Bench(work, args.full)
        if "kills" in groups:
            strategies = [("single", 1)] + ([("ddp", 2), ("fsdp", 2), ("zero3", 2)] if args.full else [("fsdp", 2)])
            points = ["mid-epoch-1", "checkpoint-write", "mid-epoch-2"]
            for strategy, gpus in strategies:
                for point in points if (args.full or strategy == "single") else ["mid-epoch-2"]:
                    m.case("kills", f"SIGKILL {point} x {strategy}", lambda s=strategy, g=gpus, p=point: b.kill_case(s, g, p))
        if "signals" in groups:
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                m.case("signals", f"{sig.name} to sftplan run (single)", lambda s=sig: b.signal_case(s))
            if args.full:
                m.case("signals", "SIGTERM to sftplan run (fsdp x 2)", lambda: b.signal_case(signal.SIGTERM, "fsdp", 2))
            m.case("signals", "SIGKILL of the recorded launcher pid (ddp x 2)", b.kill_recorded_pid)
        if "lifecycle" in groups:
            m.case("lifecycle", "two runs at the same instant", b.lock_case)
            m.case("lifecycle", "a node dies mid-run (2 nodes on localhost)", b.node_dies_case)
            got = b.disk_full_case()
            if got is None:
                print("  [skipped ] lifecycle: disk full (needs root to mount a small tmpfs)")
            else:
                m.record("lifecycle", "disk fills mid-run", *got)
        if "corruptions" in groups:
            for how in ("safetensors-overwrite-4k", "safetensors-truncated", "gate-json-malformed", "run-json-malformed"):
                m.case("corruptions", how, lambda h=how: b.corrupt_case(h))
        if "bad-inputs" in groups:
            try:
                for name, ok, why in b.bad_input_cases():
                    m.record("bad-inputs", name, ok, why)
            except Exception as exc:  # noqa: BLE001
                m.record("bad-inputs", "harness", False, str(exc)[:300])
            m.case("bad-inputs", "run: prompt longer than max_seq_len", b.long_prompt_case)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    all_ok = m.summary()
    print(f"  ({time.time() - started:.0f} s; command: python benchmarks/fault_matrix.py"
          f"{' --full' if args.full else ''})")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
