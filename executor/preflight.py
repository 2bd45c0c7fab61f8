"""Checks before a run, before anything heavy is imported or started. No torch import.

Each failure is one clear line (``UserError``, exit 2). ``run_preflight`` returns notes (what was
checked, what was overridden) for run.json's ``notes`` and the run log.

Order: the plan itself (method, recommended config, approval), the run folder, the data files
(present, unchanged since approval, every row valid), the visible accelerators, the free disk.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import UserError
from advisor.modelfiles import sha256_file
from advisor.models import DataFile, Plan
from advisor.planfile import verify

from advisor.units import GIB
from executor import names

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class CheckedPlan:
    """A plan that passed ``check_plan``: approved, intact, full SFT or LoRA, a supported strategy. The executor's
    later steps (translate, launch, train) take this and check nothing again."""

    plan: Plan
    strategy: str

    @property
    def sha256(self) -> str:
        return self.plan.plan_sha256


def check_plan(plan: Plan) -> CheckedPlan:
    """The one place that refuses a plan the executor cannot run (one line each)."""
    from advisor.run_limits import run_refusal
    from executor.translate import SUPPORTED

    if plan.method not in ("full-sft", "lora"):  # lora: trained through peft (executor/lora.py)
        raise UserError(f"plan's method is {plan.method}: this executor runs full-sft and lora plans")
    if plan.recommended is None:
        raise UserError("plan has no recommended configuration (nothing fit the constraints): nothing to run")
    strategy = plan.recommended.strategy
    if strategy not in SUPPORTED:
        raise UserError(f"strategy '{strategy}' is not supported by the executor (supported: {', '.join(dict.fromkeys(SUPPORTED))})")
    refusal = run_refusal(strategy, plan.method, bool(plan.request.packing))  # the planner's own rule (advisor/run_limits.py)
    if refusal:
        raise UserError(f"strategy {refusal}")
    why = verify(plan)
    if why:
        raise UserError(why)
    return CheckedPlan(plan=plan, strategy=strategy)


# --------------------------------------------------------------------------- run folder


def _identity(run_dir: Path) -> list[tuple[str | None, str]]:
    """(plan_sha256, file) for each of run.json and plan.yaml the run folder holds."""
    import yaml

    found = []
    for name in ("run.json", "plan.yaml"):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if name == "run.json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError):
            raise UserError(f"{path}: unreadable; this folder's run cannot be identified") from None
        found.append(((data.get("plan_sha256") if isinstance(data, dict) else None), name))
    return found


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid in (os.getpid(), os.getppid()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a killed launcher nobody reaped is a zombie: signal 0 still reaches it, but it runs nothing
    return process_state(pid) not in ("Z", "X")


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (R, S, Z, ...), or None where there is no /proc entry to read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


# What a base model / exported model folder holds beside config.json (weights or tokenizer files), and what a LoRA
# adapter folder holds: a run written into (or under) one would add files to the model that was approved.
_MODEL_FILES = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json",
                "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _is_run_folder(folder: Path) -> bool:
    """Holds a run: run.json or run.lock, or a plan.yaml beside what a run writes (config/, checkpoints, gate.json,
    metrics.jsonl). A plan's own folder (plan.yaml alone, the default run folder beside it) is not one."""
    if (folder / names.RUN_JSON).is_file() or (folder / names.RUN_LOCK).is_file():
        return True
    traces = ((folder / names.CONFIG / names.INPUTS).is_file() or (folder / names.CONFIG / names.TRAINING_ARGS).is_file()
              or (folder / names.GATE).is_file() or (folder / names.METRICS).is_file() or bool(names.checkpoints(folder)))
    return traces and ((folder / names.PLAN).is_file() or bool(names.checkpoints(folder)))


def _is_checkpoint(folder: Path) -> bool:
    name = folder.name[len(names.DAMAGED_PREFIX):] if folder.name.startswith(names.DAMAGED_PREFIX) else folder.name
    return names.has_marker(folder) or names.checkpoint_step(Path(name)) >= 0


def _is_model_folder(folder: Path) -> bool:
    if (folder / "adapter_config.json").is_file() and any((folder / n).is_file() for n in _ADAPTER_FILES):
        return True
    return (folder / "config.json").is_file() and any(p.is_file() for g in _MODEL_FILES for p in folder.glob(g))


def _kind(folder: Path, *, itself: bool) -> str | None:
    """What ``folder`` holds that a run folder must never be written into, or None."""
    if (folder / "PROMOTED.md").is_file():
        return "a promotion (holds PROMOTED.md)"
    if _is_checkpoint(folder):
        return f"a run's checkpoint folder ({names.COMPLETE} marker / checkpoint-<step> name)"
    if _is_model_folder(folder):
        return "a model folder (config.json + weights / tokenizer files)"
    if not itself and _is_run_folder(folder):
        return "another run's folder"
    return None


def check_out_folder(run_dir: Path) -> None:
    """Refuse a run folder that is, or is inside, a checkpoint, a model folder or a promotion, or that is inside
    another run folder: the run would write plan.yaml, config/, data/ and run.lock into what was approved or saved.
    Checked before anything is written (symlinks resolved)."""
    run_dir = Path(run_dir)
    try:
        target = run_dir.expanduser().resolve()
    except (OSError, RuntimeError):
        target = Path(os.path.abspath(run_dir.expanduser()))
    for folder in (target, *target.parents):
        if not folder.is_dir():
            continue
        kind = _kind(folder, itself=folder == target)
        if kind is None:
            continue
        where = "is" if folder == target else f"is inside {folder},"
        raise UserError(f"{run_dir}: {where} {kind}; a run written there would damage it: choose another output "
                        "folder")


def live_run(run_dir: Path) -> str | None:
    """The pid (as text, 'unknown' if unrecorded) of a live `sftplan run` on ``run_dir``, else None: its run.lock is
    flock'ed (executor/lifecycle.py RunLock), or run.json says running under a live pid (as ``check_run_dir`` reads
    it; where flock cannot be tested, the pid recorded in run.lock decides too)."""
    import fcntl

    lock = Path(run_dir) / names.RUN_LOCK
    if lock.is_file():
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            fd = None
        if fd is not None:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return holder or "unknown"
                except OSError:  # no flock here (some network file systems): the recorded pid decides
                    if holder.isdigit() and _pid_alive(int(holder)):
                        return holder
            finally:
                os.close(fd)  # also drops the shared lock taken to test it
    info_path = Path(run_dir) / names.RUN_JSON
    if info_path.is_file():  # as check_run_dir reads it: a live pid under 'running' is a run in progress
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(info, dict) and info.get("status") == "running" and _pid_alive(info.get("pid")):
            return str(info["pid"])
    return None


def check_run_dir(run_dir: Path, plan: Plan) -> list[str]:
    """Refuse a folder that holds another plan's run (or an unidentified one, or a live one), and one that is or is
    inside a checkpoint, model folder or promotion, or inside another run folder (``check_out_folder``)."""
    check_out_folder(run_dir)
    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder")
    ids = _identity(run_dir)
    traces = sorted(p.name for p in run_dir.iterdir()
                    if p.name.startswith("checkpoint-") or p.name in ("gate.json", "metrics.jsonl"))
    for sha, source in ids:
        if sha != plan.plan_sha256:
            raise UserError(f"{run_dir} holds another plan's run ({source} has plan_sha256 {str(sha)[:12]}, this plan "
                            f"is {plan.plan_sha256[:12]}); choose another output folder")
    if not ids and traces:
        raise UserError(f"{run_dir} holds run files ({', '.join(traces[:3])}) of an unidentified run (no run.json or "
                        "plan.yaml); choose another output folder")
    foreign = [] if ids else sorted(p.name for p in run_dir.iterdir() if not names.is_run_entry(p.name))
    if foreign:  # a run (or --dry-run) writes config/, data/, plan.yaml ... into its folder: never among others' files
        raise UserError(f"{run_dir} holds {foreign[0]}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}, "
                        "which are not a run's: a run folder is new, empty or this plan's run; choose another "
                        "output folder")
    if (run_dir / "run.json").is_file():
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        if info.get("status") == "running" and _pid_alive(info.get("pid")):
            raise UserError(f"{run_dir}: a run of this plan is in progress (pid {info['pid']}); stop it first "
                            "(or create STOP), or remove run.json if that process is not this run")
    complete = [p.name for p in run_dir.glob("checkpoint-*") if (p / "COMPLETE").is_file()]
    return [f"run folder {run_dir} already holds this plan's run ({len(complete)} complete checkpoint(s)): resuming"] \
        if ids else []


def check_run_plan_copy(run_dir: Path, plan: Plan) -> None:
    """A run folder's plan.yaml (what the trainer reads) must be this approved plan, byte for byte in content:
    a copy edited or swapped in (pre-seeded, or after a stop) is refused, never trained."""
    from advisor.planfile import read_plan

    copy_path = run_dir / "plan.yaml"
    if not copy_path.is_file():
        return
    copy = read_plan(copy_path)
    why = verify(copy)
    if why or copy.plan_sha256 != plan.plan_sha256:
        raise UserError(f"{copy_path} is not the approved plan {plan.plan_sha256[:12]} "
                        f"({why or 'it is plan ' + str(copy.plan_sha256)[:12]}); refusing to train on it: restore "
                        "the approved copy or choose another output folder")


# --------------------------------------------------------------------------- data files


def resolve_data_path(path: str, plan_path: str | Path) -> Path:
    """A plan's data path: absolute as is; relative to the working directory, else to the plan's folder."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    beside = Path(plan_path).parent / p
    return beside if beside.exists() else p


def check_data_file(df: DataFile, what: str, plan_path: str | Path) -> Path:
    """The file's resolved path; refuses a missing file or one whose content changed since approval."""
    p = resolve_data_path(df.path, plan_path)
    if not p.is_file():
        raise UserError(f"{what} {df.path}: no such file (the approved plan names it)")
    actual = sha256_file(p)
    if actual != df.sha256:
        raise UserError(f"{what} {p} changed since approval (sha256 {actual[:12]}, approved {df.sha256[:12]}); "
                        "re-plan and re-approve")
    return p


def golden_file(plan: Plan) -> DataFile | None:
    return plan.evaluation.golden or plan.request.golden


def check_data(plan: Plan, plan_path: str | Path) -> list[str]:
    from executor.evalgate import load_golden  # pure: no torch at import

    df = plan.request.dataset.file
    if df is None:
        raise UserError("plan names no dataset file (request.dataset.file): nothing to train on")
    gf = golden_file(plan)
    if gf is None:
        raise UserError("plan names no golden set (evaluation.golden): the eval gate could pass no epoch, so nothing "
                        "could be promoted; re-plan with --golden")
    data_path = check_data_file(df, "dataset", plan_path)
    golden_path = check_data_file(gf, "golden set", plan_path)
    from advisor.rows import read_rows  # pure: no torch at import

    rows = read_rows(data_path)  # raises UserError listing every bad row
    golden = load_golden(golden_path)
    return [f"dataset {data_path}: {len(rows)} rows, sha256 {df.sha256[:12]} as approved",
            f"golden set {golden_path}: {len(golden)} rows, sha256 {gf.sha256[:12]} as approved"]


def check_model(plan: Plan) -> list[str]:
    """The base model is the approved one (its files' sha256, when a local directory); the trainer checks again."""
    from executor.integrity import verify_model

    return verify_model(plan, {"model": plan.request.model_path or plan.request.model})[2]


# --------------------------------------------------------------------------- accelerators


def _visible_filter() -> list[str] | None:
    """Device indexes/UUIDs the process may use (CUDA_VISIBLE_DEVICES, or ROCm's HIP_/ROCR_VISIBLE_DEVICES), or None."""
    for var in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        value = os.environ.get(var)
        if value is not None:
            return [d.strip() for d in value.split(",") if d.strip() and d.strip() != "-1"]
    return None


def _tool_output(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia(wanted: list[str] | None) -> list[str] | None:
    out = _tool_output(["nvidia-smi", "-L"])
    if out is None:
        return None
    devices = []  # "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)"
    for line in out.splitlines():
        if not line.startswith("GPU "):
            continue
        index, _, rest = line[4:].partition(":")
        name, _, uuid = rest.strip().partition(" (UUID: ")
        if wanted is None or index.strip() in wanted or uuid.rstrip(")") in wanted:
            devices.append(name.strip())
    return devices


def _names_by_index(found: dict[int, str], wanted: list[str] | None) -> list[str]:
    return [name for i, name in sorted(found.items()) if wanted is None or str(i) in wanted]


def _tool_json(argv: list[str]) -> tuple[bool, object]:
    """(True, parsed JSON) of a device tool's output; (False, None) when it is absent or printed no JSON."""
    out = _tool_output(argv)
    if out is None:
        return False, None
    try:
        return True, json.loads(out)
    except ValueError:
        return False, None


def _amd_smi(wanted: list[str] | None) -> list[str] | None:
    """`amd-smi static --asic --json` (ROCm 6+): a list of {"gpu": i, "asic": {"market_name": ...}}."""
    ok, data = _tool_json(["amd-smi", "static", "--asic", "--json"])
    if not ok:
        return None
    entries = data if isinstance(data, list) else data.get("gpu_data", []) if isinstance(data, dict) else []
    found = {}
    for n, entry in enumerate(entries):
        if isinstance(entry, dict):
            asic = entry.get("asic") if isinstance(entry.get("asic"), dict) else entry
            found[int(entry.get("gpu", n))] = str(asic.get("market_name") or asic.get("MARKET_NAME") or "")
    return _names_by_index(found, wanted)


def _rocm_smi(wanted: list[str] | None) -> list[str] | None:
    """`rocm-smi --showproductname --json`: {"card0": {"Card Series": "AMD Instinct MI300X OAM", ...}, ...}."""
    ok, data = _tool_json(["rocm-smi", "--showproductname", "--json"])
    if not ok:
        return None
    found = {}
    for card, info in data.items() if isinstance(data, dict) else []:
        if not (isinstance(info, dict) and card.lower().startswith("card") and card[4:].isdigit()):
            continue
        name = next((str(v) for k, v in info.items() if k.lower() in ("card series", "card model", "market name")), "")
        found[int(card[4:])] = name
    return _names_by_index(found, wanted)


def _torch_names() -> list[str] | None:
    """Device names from torch (CUDA or ROCm builds alike) in a subprocess, so this process stays light."""
    import sys

    code = ("import torch\nif torch.cuda.is_available():\n"
            "    print('\\n'.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return names if out.returncode == 0 and names else None


def visible_accelerators() -> tuple[list[str], str]:
    """(device names, how they were found), for every vendor the catalog holds.

    NVIDIA: ``nvidia-smi -L``. AMD: ``amd-smi static --asic --json``, else ``rocm-smi --showproductname
    --json``. Either filtered by CUDA_VISIBLE_DEVICES (or HIP_/ROCR_VISIBLE_DEVICES). Without those
    tools: torch's device names (``torch.cuda.get_device_name``, CUDA and ROCm builds) when a device node
    exists (/dev/nvidia0, /dev/kfd), else the count in CUDA_VISIBLE_DEVICES with unknown names ('').
    """
    wanted = _visible_filter()
    suffix = " filtered by the *_VISIBLE_DEVICES variable" if wanted is not None else ""
    for how, probe in (("nvidia-smi -L", _nvidia), ("amd-smi static", _amd_smi), ("rocm-smi --showproductname", _rocm_smi)):
        devices = probe(wanted)
        if devices:
            return devices, how + suffix
    if any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/kfd")):
        names = _torch_names()
        if names:
            return names, "torch.cuda.get_device_name"
    if wanted:
        return [""] * len(wanted), "CUDA_VISIBLE_DEVICES"
    return [], "no nvidia-smi, amd-smi or rocm-smi and no *_VISIBLE_DEVICES"


def _words(name: str) -> list[str]:
    import re

    return re.findall(r"[a-z0-9]+", name.lower())


def _type_matches(gpu_id: str, name: str) -> bool:
    """Does a device name (nvidia-smi / amd-smi / rocm-smi / torch) fit a catalog tier id ('h100-sxm', 'mi300x')?

    The tier's chip token (h100, a100, l4, mi300x...) must be a whole word of the name (so 'l4' does
    not match an L40S); a memory token (40gb, 80gb) must be one too when the name states a size; a
    'pcie' tier needs 'PCIe' in the name, an 'sxm' tier a name without it.
    """
    words = _words(name)
    tokens = gpu_id.lower().split("-")
    if tokens[0] not in words:
        return False
    mem = [t for t in tokens if t.endswith("gb") and t[:-2].isdigit()]
    if mem and any(w.endswith("gb") and w[:-2].isdigit() for w in words) and not any(t in words for t in mem):
        return False
    if "pcie" in tokens and "pcie" not in words:
        return False
    if "sxm" in tokens and "pcie" in words:
        return False
    return True


def check_devices(plan: Plan, allow_mismatch: bool) -> list[str]:
    rec = plan.recommended
    per_node = rec.num_gpus // rec.num_nodes
    wants_cpu = rec.gpu.lower().startswith("cpu")
    names, how = visible_accelerators()
    want = 0 if wants_cpu else per_node
    seen = (", ".join(sorted(set(n or "unknown type" for n in names))) if names else "none")
    problems = []
    if len(names) != want:
        problems.append(f"plan wants {want} x {rec.gpu} per node, {len(names)} visible ({seen}; {how})")
    elif not wants_cpu:
        wrong = [n for n in names if n and not _type_matches(rec.gpu, n)]
        if wrong:
            problems.append(f"plan wants {rec.gpu}, visible devices are {', '.join(sorted(set(wrong)))} ({how})")
    if not problems:
        return [f"devices: {len(names)} visible ({seen}) as the plan wants"]
    if not allow_mismatch:
        raise UserError(problems[0] + "; refusing (pass --allow-mismatch to run anyway, recorded in the run log)")
    return [f"allow-mismatch: {problems[0]}; running anyway as asked"]


# --------------------------------------------------------------------------- disk


def _model_dir(plan: Plan) -> Path | None:
    for cand in (plan.request.model_path, plan.request.model):
        if cand and Path(cand).expanduser().is_dir():
            return Path(cand).expanduser()
    return None


def _safetensors_params(path: Path) -> int:
    """Parameter count from a .safetensors header (8-byte length + JSON), no torch."""
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    total = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in info["shape"]:
            count *= dim
        total += count
    return total


def measured_checkpoint_bytes(model_dir: Path, strategy: str, precision: str = "bf16-mixed") -> int | None:
    """One checkpoint of the model in ``model_dir``: its safetensors headers' parameter count times the
    bytes per parameter the executor writes (advisor.cost.checkpoint_bytes_per_param, the one formula)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    try:
        params = sum(_safetensors_params(f) for f in files)
    except (OSError, ValueError, KeyError, struct.error):
        return None
    from advisor.cost import checkpoint_bytes_per_param

    return params * checkpoint_bytes_per_param(precision, strategy)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def check_disk(plan: Plan, run_dir: Path) -> list[str]:
    """Free disk for keep_last + 1 checkpoints (the newest is written before the oldest is deleted)."""
    ck = plan.checkpointing
    per_ckpt = int(ck.disk_gib_per_checkpoint * GIB)
    source = "plan"
    model_dir = _model_dir(plan)
    measured = (measured_checkpoint_bytes(model_dir, plan.recommended.strategy, plan.recommended.precision)
                if model_dir else None)
    if measured is not None and measured > per_ckpt:
        per_ckpt, source = measured, f"measured from {model_dir}'s parameter count"
    existing = sum(_dir_bytes(p) for p in run_dir.glob("checkpoint-*")) if run_dir.is_dir() else 0
    need = max(0, (ck.keep_last + 1) * per_ckpt - existing)
    probe = run_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    line = (f"{need / GIB:,.2f} GiB for {ck.keep_last} + 1 checkpoints of {per_ckpt / GIB:,.3f} GiB ({source}), "
            f"{free / GIB:,.1f} GiB free at {probe}")
    if free < need:
        raise UserError(f"not enough free disk: need {line}")
    return [f"disk: need {line}"]


# --------------------------------------------------------------------------- all together


def run_preflight(plan_path: str | Path, plan: Plan | CheckedPlan, run_dir: str | Path, *,
                  allow_mismatch: bool = False) -> list[str]:
    """Every check, in order; the first failure raises a one-line UserError. Returns the notes.

    ``plan``: a CheckedPlan (``check_plan`` already ran), or a plan, checked here."""
    run_dir = Path(run_dir)
    plan = (plan if isinstance(plan, CheckedPlan) else check_plan(plan)).plan
    notes = check_run_dir(run_dir, plan)
    check_run_plan_copy(run_dir, plan)
    from executor.integrity import check_run_files

    notes += check_run_files(run_dir, plan)
    notes += check_data(plan, plan_path)
    notes += check_model(plan)
    if plan.recommended.num_nodes > 1:  # submitted from a login node: the devices are the compute nodes'
        notes.append("devices: checked on each node when its node script starts (executor/node.py), not on the "
                     "machine that writes the scripts")
    else:
        notes += check_devices(plan, allow_mismatch)
    notes += check_disk(plan, run_dir)
    return notes


def missing_train_packages(strategy: str, method: str = "full-sft") -> list[str]:
    """The `train` extra's packages this run imports that are not installed (found without importing them)."""
    import importlib.util

    needed = ["torch", "transformers", "accelerate", "safetensors", "tokenizers"] + (["peft"] if method == "lora" else [])
    if strategy.startswith("zero"):
        needed.append("deepspeed")
    return [name for name in needed if importlib.util.find_spec(name) is None]


def require_train_packages(strategy: str, what: str = "sftplan run", method: str = "full-sft") -> None:
    missing = missing_train_packages(strategy, method)
    if missing:
        raise UserError(f"{what} trains, which needs the train extra: pip install 'sftplan[train]' "
                        f"(missing: {', '.join(missing)}); planning commands work without it")
