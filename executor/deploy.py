"""The plan's deploy suite through EleutherAI's lm-evaluation-harness: the base model against the epoch to promote.

``evaluate(run_dir)`` scores every check of ``plan.evaluation.deploy_suite`` that names an lm-eval task,
on the base model and on the best passing epoch's checkpoint, with the same settings (batch size, limit,
seeds from the plan), through lm-eval's Python API and its Hugging Face backend (``HFLM``; a LoRA
checkpoint is loaded as base + adapter through its ``peft=`` argument, recorded as ``"adapter": true``).
It writes ``RUN_DIR/deploy.json`` atomically; ``sftplan promote`` reads it and refuses a required check that
regressed beyond its allowed drop.

- A LoRA adapter that trained a few steps can score exactly as the base on a coarse metric (accuracy over a
  few prompts): peft starts lora_B at zero, so the adapted model is close to the base. That is not the adapter
  being ignored: tests/executor/test_lora_deploy.py checks that this loader's log-likelihoods move with the
  adapter's weights (and equal the base's for an untouched adapter).

- A drop is in points: ``100 x (base - tuned)`` for a metric where higher is better, ``100 x (tuned - base)``
  where a rise is the regression (CrowS-Pairs' pct_stereotype).
- A task that cannot run here is reported in one line, the other tasks still run: data on the hub while
  offline -> how to point it at a local copy (``--task-data TASK=PATH``: a file or a clone of its hub dataset;
  or ``--include-path DIR``: a folder of lm-eval task YAMLs); for a group, its subtasks
  (``--task-data SUBTASK=PATH``, one or more: the group's check is then scored on those and recorded as
  ``not cleared (partial)``; or ``--task-data GROUP=DIR`` when all its subtasks read one dataset); a missing
  Python module -> the lm-eval extra that installs it (from lm-eval's metadata); an unknown task name; a
  ``--task-data`` file without a column or split the task's YAML reads. A ``--task-data`` name the suite does
  not run (itself or as a group's subtask) is bad input.
- ``--limit N`` (or the plan's ``evaluation.deploy.limit``) scores the first N examples of each task; it is
  recorded, and a limited run cannot clear a required check unless the plan says so (``limited_can_clear``).
- Several GPUs: lm-eval's own paths do it, not this module: ``accelerate launch -m lm_eval ...`` for
  data-parallel copies, or ``parallelize=True`` in the model args for a model too large for one GPU. This
  function runs one process (one device: the first GPU, or the CPU).

``write_local_tasks`` writes two small lm-eval tasks (multiple choice and generative) over JSONL files,
used by the tests and the demo, so the suite runs end to end offline. lm_eval and torch are imported
inside the functions.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from advisor.errors import UserError
from advisor.models import DeployCheck, DeploySettings, Plan
from advisor.yamlio import atomic_write_text
from executor.lora import is_adapter_checkpoint

DEPLOY_FILE = "deploy.json"


class TaskUnavailable(Exception):
    """A task that cannot run on this machine; the message is the one line the user sees."""


@dataclass
class CheckResult:
    name: str
    task: str | None
    metric: str | None
    required: bool
    max_regression: float
    higher_is_better: bool
    base: float | None = None
    tuned: float | None = None
    drop_points: float | None = None
    verdict: str = "not run"  # passed | FAILED | not cleared (limited) | unavailable | manual | eval gate
    note: str = ""


def drop_points(base: float, tuned: float, higher_is_better: bool) -> float:
    """The regression in points (positive = worse), for metrics on a 0-1 scale."""
    return round(100.0 * ((base - tuned) if higher_is_better else (tuned - base)), 6)


def _verdict(check: DeployCheck, drop: float, limited: bool, settings: DeploySettings) -> str:
    if drop > check.max_regression + 1e-9:
        return "FAILED"
    if limited and not settings.limited_can_clear:
        return "not cleared (limited)"
    return "passed"


def _result(check: DeployCheck) -> CheckResult:
    return CheckResult(name=check.name, task=check.task, metric=check.metric, required=check.required,
                       max_regression=check.max_regression, higher_is_better=check.higher_is_better)


def unscored_result(check: DeployCheck, missing: dict[str, str]) -> CheckResult:
    """A check evaluate does not score: no lm-eval task (the eval gate, or a manual step), or a task that cannot
    run here (``missing``: task -> its one line)."""
    r = _result(check)
    if check.task is None:
        r.verdict = "eval gate" if check.name.lower() == "golden set" else "manual"
        r.note = ("answered by gate.json" if r.verdict == "eval gate"
                  else "no lm-eval task: run it yourself and pass --deploy-results to promote")
    else:
        r.verdict, r.note = "unavailable", missing[check.task]
    return r


def scored_result(check: DeployCheck, base: float, tuned: float, *, limited: bool, settings: DeploySettings,
                  partial: tuple[list[str], int] | None = None) -> CheckResult:
    """A check scored on the base and the tuned model. ``partial``: (the subtasks scored, how many the group has)
    when only some of a group's subtasks were pointed at data: recorded, it cannot clear (or fail) the check."""
    r = _result(check)
    r.base, r.tuned = base, tuned
    drop = drop_points(base, tuned, check.higher_is_better)
    if partial:
        r.verdict = "not cleared (partial)"
        r.note = (f"scored on {len(partial[0])} of {partial[1]} subtasks ({', '.join(partial[0])}): drop {drop:g} "
                  f"pts; point all {partial[1]} subtasks at data to clear it")
    else:
        r.drop_points = drop
        r.verdict = _verdict(check, drop, limited, settings)
    return r


def deploy_report(plan: Plan, best: dict, *, base_model: str, adapter: bool, limit: int | None,
                  settings: DeploySettings, task_data: dict[str, str], include_paths: list[str],
                  results: list[CheckResult]) -> dict:
    """deploy.json's content (``read_deploy`` checks a file against this schema)."""
    return {"plan_sha256": plan.plan_sha256, "epoch": best["epoch"], "checkpoint": best["checkpoint"],
            "base_model": base_model, "adapter": adapter, "limit": limit, "limited_can_clear": settings.limited_can_clear,
            "seed": settings.seed, "batch_size": settings.batch_size, "lm_eval_version": _lm_eval_version(),
            "task_data": task_data, "include_paths": include_paths,
            "finished_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "checks": [asdict(r) for r in results]}


_NOT_EXTRAS = {"dev", "tasks", "all", "testing"}  # lm-eval extras that bundle others


def _lm_eval_extra(module: str) -> str | None:
    """The lm-eval extra whose requirements install ``module`` (from lm-eval's own metadata), or None."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("lm_eval") or []
    except PackageNotFoundError:
        return None
    norm = lambda name: re.sub(r"[-_.]+", "_", name).lower()  # noqa: E731
    for req in reqs:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*).*;\s*extra\s*==\s*[\"']([^\"']+)[\"']", req)
        if m and norm(m.group(1)) == norm(module.split(".")[0]) and m.group(2) not in _NOT_EXTRAS:
            return m.group(2)
    return None


def _split_names(task: str, tm) -> set[str]:
    """The dataset splits a task (or a group's subtasks) reads, from their YAMLs."""
    if tm is None:
        return set()
    names = set()
    for t in (_leaves(task, tm.task_index) or [task]):
        cfg = (tm.task_index[t].cfg or {}) if t in tm.task_index else {}
        names |= {str(cfg[k]) for k in ("test_split", "validation_split", "training_split", "fewshot_split") if cfg.get(k)}
    return names


def _unavailable_line(task: str, exc: BaseException, *, pointed: bool = False, tm=None) -> str:
    """One line: why ``task`` cannot run here and, only where it would help, how to point it at local data."""
    if isinstance(exc, TaskUnavailable):
        return f"{task}: cannot run here: {exc}"
    text = f"{exc.__class__.__name__}: {exc}".replace("\n", " ")
    hint = (f"; point it at a local copy with --task-data {task}=PATH "
            "or --include-path DIR (a folder of lm-eval task YAMLs)")
    if isinstance(exc, ModuleNotFoundError):
        extra = _lm_eval_extra(exc.name or "")
        fix = (f'pip install "lm-eval[{extra}]=={_lm_eval_version()}"' if extra  # the extra, not another release
               else "install the package that provides it")
        return f"{task}: cannot run here: it needs the Python module '{exc.name}', which is not installed: {fix}"
    if "Offline" in text or "Couldn't reach" in text or isinstance(exc, ConnectionError):
        why = "its data is on the Hugging Face hub and this machine is offline"
        if pointed:  # its data was pointed at, yet something still reached for the hub (e.g. a few-shot dataset)
            return f"{task}: cannot run here: {why}, and --task-data did not cover it ({text[:160]})"
    elif isinstance(exc, KeyError) and pointed:
        key = exc.args[0] if exc.args else "?"
        if str(key) in _split_names(task, tm):
            return (f"{task}: cannot run here: its --task-data has no '{key}' split, which the task's YAML reads; "
                    f"give a folder holding that split too (e.g. a clone of the task's hub dataset)")
        return (f"{task}: cannot run here: its --task-data has no column '{key}', which the task's YAML reads; "
                "give a file with the task's own columns (e.g. from a clone of its hub dataset)")
    elif isinstance(exc, FileNotFoundError):
        why = f"a file it reads is missing ({exc.filename})"
    else:
        return f"{task}: cannot run here: lm-eval failed building it: {text[:200]}"
    return f"{task}: cannot run here: {why}" + (_group_hint(task, tm) if _is_group(task, tm) else hint)


def _kind(entry) -> str:
    return str(getattr(entry.kind, "name", entry.kind)).upper()


def _is_group(task: str, tm) -> bool:
    entry = tm.task_index.get(task) if tm is not None else None
    return entry is not None and _kind(entry) in ("GROUP", "TAG")


def _leaves(name: str, index: dict, depth: int = 0) -> list[str] | None:
    """The tasks a group (or tag) runs, through its subgroups; None when one is defined inline (not pointable)."""
    entry = index.get(name)
    if entry is None or depth > 8:
        return None
    kind = _kind(entry)
    if kind in ("TASK", "PY_TASK"):
        return [name]
    members = sorted(entry.tags) if kind == "TAG" else (entry.cfg or {}).get("task") or []
    out: list[str] = []
    for item in members if isinstance(members, list) else [members]:
        child = item if isinstance(item, str) else (item.get("group") or item.get("task")) if isinstance(item, dict) else None
        sub = _leaves(child, index, depth + 1) if isinstance(child, str) else None
        if sub is None:
            return None
        out += [t for t in sub if t not in out]
    return out


def _group_hint(task: str, tm) -> str:
    leaves = _leaves(task, tm.task_index) or []
    if not leaves:
        return "; it is a group of tasks: give --include-path DIR, a folder with task YAMLs of your own that read local data"
    shown = " ".join(f"--task-data {t}=PATH" for t in leaves[:2]) + (" ..." if len(leaves) > 2 else "")
    one = " or --task-data {task}=DIR (a local copy of the one dataset they all read)" if _one_dataset(leaves, tm) else ""
    return (f"; it is a group of {len(leaves)} tasks: point its subtasks at local copies ({shown}; "
            f"subtasks: {', '.join(leaves)}){one.format(task=task)}")


def _one_dataset(leaves: list[str], tm) -> bool:
    """Whether all these tasks read one dataset (same path and name), so one local copy serves them all."""
    sources = {((tm.task_index[t].cfg or {}).get("dataset_path"), (tm.task_index[t].cfg or {}).get("dataset_name"))
               for t in leaves}
    return len(sources) == 1 and next(iter(sources))[0] is not None


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


LM_EVAL_RANGE = ">=0.4.12,<0.5"  # pyproject's eval extra: the releases whose TaskManager has the index and factory used here


def _task_manager(include_paths: list[str]):
    """lm-eval's TaskManager. Its task index and task factory (lm_eval/tasks/_index.py, _factory.py) came with
    0.4.12 and are not public API, so another release is refused in one line rather than failing mid-suite."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=include_paths or None)
    if not (hasattr(tm, "task_index") and hasattr(getattr(tm, "_factory", None), "build")):
        raise UserError(f"lm-eval {_lm_eval_version()} has no task index / task factory (added in 0.4.12): "
                        f'pip install "lm-eval{LM_EVAL_RANGE}"')
    return tm


_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def _data_overrides(entry, path: Path) -> dict:
    """Config overrides that make one task read PATH: a file becomes its test split, a folder its dataset path."""
    if path.is_dir():
        return {"dataset_path": str(path)}
    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise TaskUnavailable(f"--task-data {path.name}: give a .jsonl, .json, .parquet or .csv file, or a dataset folder")
    split = (entry.cfg or {}).get("test_split") or "test"
    return {"dataset_path": builder, "dataset_name": None, "dataset_kwargs": {"data_files": {split: str(path)}}}


def _group_scope(task: str, task_data: dict[str, str], tm) -> tuple[list[str], list[str]] | None:
    """(the group's subtasks that will run, all its subtasks) when ``task`` is a group pointed at data, else None."""
    if not _is_group(task, tm):
        return None
    leaves = _leaves(task, tm.task_index) or []
    if task in task_data:
        return leaves, leaves
    pointed = [t for t in leaves if t in task_data]
    return (pointed, leaves) if pointed else None


def _task_spec(task: str, task_data: dict[str, str], tm=None):
    """A task name, or (``--task-data TASK=PATH``) the registered task built with its data pointed at PATH:
    a file (JSONL, JSON, parquet, CSV) becomes the task's test split, a folder (e.g. a clone of the task's
    hub dataset) its dataset path. Built through the TaskManager's factory so the rest of the task's own
    config (prompts, metrics, generation settings) is kept; lm-eval's dict specs would start from nothing.
    A group runs the subtasks pointed at data (``--task-data SUBTASK=PATH``, one or more), or all of them
    with ``--task-data GROUP=PATH`` when they all read one dataset; its own aggregate metric is kept."""
    entry = tm.task_index.get(task) if tm is not None else None
    if tm is not None and entry is None:
        raise TaskUnavailable(f"lm-eval knows no task '{task}' (`lm-eval ls tasks` lists them; "
                              "--include-path DIR adds a folder of task YAMLs)")
    scope = _group_scope(task, task_data, tm) if tm is not None else None
    if scope is not None:
        run, leaves = scope
        if task in task_data and not (leaves and _one_dataset(leaves, tm)):
            raise TaskUnavailable(f"'{task}' is a group whose subtasks do not read one dataset, so --task-data {task}=PATH "
                                  f"cannot point them all{_group_hint(task, tm)}")
        from lm_eval.tasks._index import Entry

        members = [{"task": t, **_data_overrides(tm.task_index[t], Path(task_data.get(t, task_data.get(task))).expanduser().resolve())}
                   for t in run]
        cfg = tm._factory._load_full_config(entry)  # noqa: SLF001 - the group's own config, functions resolved
        cfg["task"] = members
        group = Entry(name=task, kind=entry.kind, yaml_path=None, cfg=cfg)
        return tm._factory.build(group, overrides=None, registry=tm.task_index)  # noqa: SLF001
    if task not in task_data:
        return task
    path = Path(task_data[task]).expanduser().resolve()
    return tm._factory.build(entry, overrides=_data_overrides(entry, path), registry=tm.task_index)  # noqa: SLF001 - see docstring


def _pointed(task: str, task_data: dict[str, str], tm) -> bool:
    return task in task_data or _group_scope(task, task_data, tm) is not None


def _load_tasks(checks: list[DeployCheck], tm, task_data: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """(task name -> its spec for lm-eval, task name -> unavailable line). Loading builds each task's dataset,
    so a task whose data cannot be had fails here, before any model is loaded."""
    loaded, missing = {}, {}
    for check in checks:
        if check.task in loaded or check.task in missing:
            continue
        try:
            spec = _task_spec(check.task, task_data, tm)
            if isinstance(spec, str):
                tm.load([spec])
                loaded[check.task] = spec
            else:  # a built Task holds its requests: build a fresh one for each model scored
                loaded[check.task] = lambda task=check.task: _task_spec(task, task_data, tm)
        except Exception as exc:  # noqa: BLE001 - each failure is one line, the other tasks still run
            missing[check.task] = _unavailable_line(check.task, exc, pointed=_pointed(check.task, task_data, tm), tm=tm)
    return loaded, missing


def _check_task_data(checks: list[DeployCheck], task_data: dict[str, str], tm) -> None:
    """Bad input (exit 2): a --task-data name that no check of the suite runs, itself or as a group's subtask."""
    runs = {}
    for check in checks:
        runs[check.task] = check.task
        if _is_group(check.task, tm):
            for leaf in _leaves(check.task, tm.task_index) or []:
                runs.setdefault(leaf, check.task)
    for task in task_data:
        if task not in runs:
            known = "lm-eval knows no task of that name" if tm.task_index.get(task) is None else "no check of the plan's deploy suite runs it"
            raise UserError(f"--task-data {task}={task_data[task]}: {known} (the suite runs: {', '.join(c.task for c in checks)}, "
                            "and a group's subtasks)")


def _device() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "cuda:0", "bfloat16"
    return "cpu", "float32"


def _lm(model_path: Path, base_path: str, settings: DeploySettings):
    """lm-eval's HF model: a full checkpoint, or the base model + this checkpoint's LoRA adapter."""
    from lm_eval.models.huggingface import HFLM

    device, dtype = _device()
    kwargs = {"pretrained": str(model_path), "dtype": dtype, "device": device, "batch_size": settings.batch_size}
    if is_adapter_checkpoint(model_path):
        kwargs.update(pretrained=base_path, peft=str(model_path))
    return HFLM(**kwargs)


@contextmanager
def _quiet_git():
    """lm-eval records its git hash with ``git describe`` and lets git's stderr through: outside a git checkout
    that prints "fatal: not a git repository" on every call. The same lookup, git's stderr captured; lm-eval's
    own errors and logs are untouched."""
    try:
        import lm_eval.evaluator as ev
        from lm_eval.loggers.utils import get_commit_from_path
    except ImportError:
        yield
        return
    original = getattr(ev, "get_git_commit_hash", None)
    if original is None:
        yield
        return

    def quiet() -> str | None:
        try:
            proc = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=False)  # noqa: S607
        except OSError:
            proc = None
        if proc is not None and proc.returncode == 0:
            return proc.stdout.strip()
        return get_commit_from_path(os.getcwd())

    ev.get_git_commit_hash = quiet
    try:
        yield
    finally:
        ev.get_git_commit_hash = original


def _score(lm, spec, tm, metric: str, settings: DeploySettings, limit: int | None, task: str | None = None) -> float:
    import lm_eval

    seed = settings.seed
    with _quiet_git():
        out = lm_eval.simple_evaluate(model=lm, tasks=[spec() if callable(spec) else spec], task_manager=tm, limit=limit,
                                      log_samples=False, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                      fewshot_random_seed=seed, bootstrap_iters=0, verbosity="ERROR")
    results = out["results"]
    own = results.get(task) if task else None  # a group's own aggregate before its subtasks' rows
    values = [r[metric] for r in ([own] if own else []) + list(results.values()) if metric in r]
    if not values:
        keys = sorted({k for r in results.values() for k in r if "," in k and "stderr" not in k})
        raise UserError(f"metric '{metric}' is not in the task's results (it reports: {', '.join(keys) or 'nothing'})")
    return float(values[0])


def _base_model(run_dir: Path, plan: Plan) -> str:
    inputs = run_dir / "config" / "inputs.json"
    if inputs.is_file():
        try:
            return str(json.loads(inputs.read_text(encoding="utf-8"))["model"])
        except (ValueError, KeyError, OSError):
            raise UserError(f"{inputs}: unreadable (it names the base model)") from None
    return plan.request.model_path or plan.request.model


def _live_run(run_dir: Path) -> str | None:
    """'pid N, lock PATH' when a run of this folder is in progress, else None: `sftplan run`'s own test
    (executor/preflight.py live_run: its run.lock flock'ed, or where that cannot be tested, run.json running under a
    live pid), on node 0's folder and every other node's ``node-<i>/``."""
    from executor import names
    from executor.preflight import live_run

    folders = [run_dir] + sorted(p for p in run_dir.glob(f"{names.NODE_PREFIX}*") if p.is_dir())
    for folder in folders:
        pid = live_run(folder)
        if pid:
            return f"pid {pid}, lock {folder / names.RUN_LOCK}"
    return None


def _check_not_running(run_dir: Path) -> None:
    """Refuse, in one line, to score a run folder a live run is still writing (checkpoints, gate.json)."""
    live = _live_run(run_dir)
    if live:
        raise UserError(f"{run_dir}: a run is still running in this folder ({live}); wait for it to end or stop it "
                        "(create STOP) before evaluating it")


def _verify_base_model(plan: Plan, base_model: str) -> list[str]:
    """The base model evaluate is about to score is the approved one: the same check `sftplan run` makes
    (executor/integrity.py verify_model: every recorded file by sha256); its one-line refusal otherwise."""
    from executor.integrity import verify_model

    record = plan.request.model_files
    folder = Path(base_model).expanduser()
    if record is not None and record.source == "local" and not folder.is_dir():  # else it would pass as a hub id
        raise UserError(f"base model {folder}: missing (the approved base model is a local folder of "
                        f"{len(record.sha256)} files); refusing to score a model that is not the approved one")
    return verify_model(plan, {"model": base_model})[2]


def _epoch_to_promote(run_dir: Path, epoch: float | None) -> dict:
    from executor.evalgate import best_passing_epoch, read_gate

    if epoch is None:
        best = best_passing_epoch(run_dir)
        if best is None:
            raise UserError(f"{run_dir}: no epoch passed the eval gate; nothing to evaluate for promotion")
        return best
    for e in read_gate(run_dir).get("epochs", []):
        if float(e["epoch"]) == float(epoch):
            return e
    raise UserError(f"--epoch {epoch:g}: gate.json records no such epoch")


def evaluate(run_dir: str | Path, *, epoch: float | None = None, limit: int | None = None,
             task_data: dict[str, str] | None = None, include_path: str | None = None, echo=print) -> dict:
    """Run the plan's deploy suite on the base model and the epoch to promote; write and return deploy.json."""
    from executor.promote import run_plan

    run_dir = Path(run_dir)
    plan = run_plan(run_dir)
    _check_not_running(run_dir)  # a run in progress: its checkpoints and gate.json are still being written
    settings = plan.evaluation.deploy or DeploySettings()
    limit = limit if limit is not None else settings.limit
    best = _epoch_to_promote(run_dir, epoch)
    ckpt = run_dir / best["checkpoint"]
    from executor.names import check_complete

    damaged = check_complete(ckpt, plan.plan_sha256)  # this plan's run wrote it, at its step
    if damaged:
        raise UserError(f"epoch {best['epoch']}'s checkpoint: {damaged}; nothing to evaluate")
    base_model = _base_model(run_dir, plan)
    model_notes = _verify_base_model(plan, base_model)  # before anything is scored: refuses a changed base model
    task_data = dict(task_data or {})
    includes = [p for p in (settings.include_path, include_path) if p]
    for p in includes:
        if not Path(p).expanduser().is_dir():
            raise UserError(f"--include-path {p}: no such folder (lm-eval task YAMLs)")
    for task, path in task_data.items():
        if not Path(path).expanduser().exists():
            raise UserError(f"--task-data {task}={path}: no such file or folder")

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never reach the hub from here
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's per-request progress bars; one line per check instead
    results: list[CheckResult] = []
    runnable = [c for c in plan.evaluation.deploy_suite if c.task]
    tm = _task_manager([str(Path(p).expanduser().resolve()) for p in includes]) if runnable or task_data else None
    _check_task_data(runnable, task_data, tm)
    loaded, missing = _load_tasks(runnable, tm, task_data) if runnable else ({}, {})
    for line in model_notes + list(missing.values()):
        echo(f"deploy: {line}")
    lms = {}
    adapter = is_adapter_checkpoint(ckpt)
    if loaded:
        echo(f"deploy: scoring {', '.join(loaded)} on the base model ({base_model}) and {ckpt.name}"
             + (" (base + its LoRA adapter)" if adapter else "") + (f", {limit} examples per task" if limit else ""))
        lms = {"base": _lm(Path(base_model), base_model, settings), "tuned": _lm(ckpt, base_model, settings)}
    for check in plan.evaluation.deploy_suite:
        if check.task is None or check.task in missing:
            results.append(unscored_result(check, missing))
            continue
        base = _score(lms["base"], loaded[check.task], tm, check.metric, settings, limit, check.task)
        tuned = _score(lms["tuned"], loaded[check.task], tm, check.metric, settings, limit, check.task)
        scope = _group_scope(check.task, task_data, tm)
        partial = (scope[0], len(scope[1])) if scope and scope[0] != scope[1] else None
        r = scored_result(check, base, tuned, limited=bool(limit), settings=settings, partial=partial)
        part = f" on {len(partial[0])} of {partial[1]} subtasks ({', '.join(partial[0])})" if partial else ""
        echo(f"deploy: {check.name} ({check.task}{part}, {check.metric}): base {r.base:.4f}, tuned {r.tuned:.4f}, "
             f"drop {drop_points(base, tuned, check.higher_is_better):g} pts (allowed {check.max_regression:g}): "
             f"{r.verdict}")
        results.append(r)
    report = deploy_report(plan, best, base_model=base_model, adapter=adapter, limit=limit, settings=settings,
                           task_data=task_data, include_paths=includes, results=results)
    atomic_write_text(run_dir / DEPLOY_FILE, json.dumps(report, indent=2) + "\n")
    return report


def _lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return "unknown"


def read_deploy(run_dir: str | Path, plan: Plan, checkpoint: str) -> dict | None:
    """RUN_DIR/deploy.json when it was written for this plan and this checkpoint, else None.

    The file is checked as it is read, against what ``deploy_report`` writes: every key present with the type the
    writer gives it (numbers finite and real, never a bool or a string), each check one of the plan's deploy
    suite as the plan records it, its verdict one the writer gives, and its ``drop_points`` the drop its own
    ``base`` and ``tuned`` give (``drop_points()``). Anything else is one line naming the file and the field."""
    path = Path(run_dir) / DEPLOY_FILE
    if not path.is_file():
        return None
    again = f"run `sftplan evaluate {run_dir}` again"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path}: unreadable ({again})") from None
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
        raise UserError(f"{path}: not a deploy report ({again})")
    try:
        for key in ("plan_sha256", "checkpoint"):
            _need(data, key, key, str)
        if data["plan_sha256"] != plan.plan_sha256 or data["checkpoint"] != checkpoint:
            return None  # another plan or another epoch: not this promotion's evidence
        _check_report(data, plan)
    except _Bad as bad:
        raise UserError(f"{path}: {bad.field}: {bad.why} ({again})") from None
    return data


class _Bad(Exception):
    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field, self.why = field, why


def _show(value) -> str:
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer too large for a float
        return False


_KINDS = {str: "a string", bool: "true or false", int: "an integer", float: "a finite number", dict: "an object",
          list: "a list"}


def _need(obj: dict, key: str, field: str, kind: type, *, optional: bool = False):
    """obj[key], which must be of ``kind`` (or null where ``optional``); else _Bad on ``field``."""
    if key not in obj:
        raise _Bad(field, "missing")
    value = obj[key]
    if value is None and optional:
        return None
    ok = (_is_number(value) if kind is float else
          isinstance(value, int) and not isinstance(value, bool) if kind is int else isinstance(value, kind))
    if not ok:
        raise _Bad(field, f"expected {_KINDS[kind]}{' or null' if optional else ''}, got {_show(value)}")
    return value


_SCORED = ("passed", "FAILED", "not cleared (limited)")
_TASK_VERDICTS = (*_SCORED, "not cleared (partial)", "unavailable")


def _check_report(data: dict, plan: Plan) -> None:
    settings = plan.evaluation.deploy or DeploySettings()
    _need(data, "epoch", "epoch", float)
    for key in ("base_model", "lm_eval_version", "finished_at"):
        _need(data, key, key, str)
    if "adapter" in data:  # written since LoRA deploy; an older report has none
        _need(data, "adapter", "adapter", bool)
    limit = _need(data, "limit", "limit", int, optional=True)
    if limit is not None and limit <= 0:
        raise _Bad("limit", f"expected a positive number of examples per task, got {_show(limit)}")
    if _need(data, "limited_can_clear", "limited_can_clear", bool) != settings.limited_can_clear:
        raise _Bad("limited_can_clear", f"{_show(data['limited_can_clear'])}, but the plan's "
                                        f"evaluation.deploy.limited_can_clear is {_show(settings.limited_can_clear)}")
    _need(data, "seed", "seed", int)
    _need(data, "batch_size", "batch_size", int)
    for task, where in _need(data, "task_data", "task_data", dict).items():
        if not isinstance(where, str):
            raise _Bad(f"task_data[{_show(task)}]", f"expected a path, got {_show(where)}")
    for i, where in enumerate(_need(data, "include_paths", "include_paths", list)):
        if not isinstance(where, str):
            raise _Bad(f"include_paths[{i}]", f"expected a path, got {_show(where)}")
    suite = {c.name: c for c in plan.evaluation.deploy_suite}
    seen: set[str] = set()
    for i, entry in enumerate(data["checks"]):
        name = _check_entry(entry, f"checks[{i}]", suite, bool(limit), data["limited_can_clear"])
        if name in seen:
            raise _Bad(f"checks[{i}].name", f"{_show(name)} is recorded twice")
        seen.add(name)
    left = [n for n in suite if n not in seen]
    if left:
        raise _Bad("checks", f"no entry for {_show(left[0])} of the plan's deploy suite")


def _check_entry(c, at: str, suite: dict[str, DeployCheck], limited: bool, limited_can_clear: bool) -> str:
    """One check of deploy.json, against the plan's check of that name and the writer's rules; returns its name."""
    if not isinstance(c, dict):
        raise _Bad(at, f"expected an object, got {_show(c)}")
    name = _need(c, "name", f"{at}.name", str)
    if name not in suite:
        raise _Bad(f"{at}.name", f"{_show(name)} is not in the plan's deploy suite")
    check = suite[name]
    planned = {"task": (str, check.task), "metric": (str, check.metric), "required": (bool, check.required),
               "max_regression": (float, check.max_regression), "higher_is_better": (bool, check.higher_is_better)}
    for key, (kind, want) in planned.items():
        got = _need(c, key, f"{at}.{key}", kind, optional=key in ("task", "metric"))
        if got != want:
            raise _Bad(f"{at}.{key}", f"{_show(got)}, but the plan's check {_show(name)} has {_show(want)}")
    verdict = _need(c, "verdict", f"{at}.verdict", str)
    _need(c, "note", f"{at}.note", str)
    base = _need(c, "base", f"{at}.base", float, optional=True)
    tuned = _need(c, "tuned", f"{at}.tuned", float, optional=True)
    drop = _need(c, "drop_points", f"{at}.drop_points", float, optional=True)
    if check.task is None:
        allowed = ("eval gate",) if name.lower() == "golden set" else ("manual",)
    else:
        allowed = _TASK_VERDICTS
    if verdict not in allowed:
        raise _Bad(f"{at}.verdict", f"{_show(verdict)} is not a verdict for this check (one of: {', '.join(allowed)})")
    scored = verdict in _SCORED or verdict == "not cleared (partial)"
    for key, value in (("base", base), ("tuned", tuned)):
        if scored and value is None:
            raise _Bad(f"{at}.{key}", f"missing a score, though the verdict is {_show(verdict)}")
        if not scored and value is not None:
            raise _Bad(f"{at}.{key}", f"a score, though the verdict is {_show(verdict)} (nothing was scored)")
    if verdict not in _SCORED:
        if drop is not None:
            raise _Bad(f"{at}.drop_points", f"a drop, though the verdict is {_show(verdict)}")
        return name
    if drop is None:
        raise _Bad(f"{at}.drop_points", f"missing, though the verdict is {_show(verdict)}")
    want = drop_points(base, tuned, check.higher_is_better)
    if abs(drop - want) > 1e-6:
        raise _Bad(f"{at}.drop_points", f"{drop:g} is not the drop its base {base:g} and tuned {tuned:g} give "
                                        f"({want:g} points)")
    settings = DeploySettings(limited_can_clear=limited_can_clear)
    expected = _verdict(check, drop, limited, settings)
    if verdict != expected:
        raise _Bad(f"{at}.verdict", f"{_show(verdict)}, but a drop of {drop:g} points (allowed "
                                    f"{check.max_regression:g}){', limited,' if limited else ''} is {_show(expected)}")
    return name


def measured_drops(report: dict) -> dict[str, float]:
    """Check name -> drop in points, for the checks of a deploy report that ran (a report ``read_deploy`` read)."""
    return {c["name"]: float(c["drop_points"]) for c in report["checks"] if c.get("drop_points") is not None}


# --------------------------------------------------------------------------- local tasks (tests, demo)


def write_local_tasks(out_dir: str | Path, pairs: list[tuple[str, str]], *, distractors: list[str]) -> dict[str, str]:
    """Two lm-eval tasks over ``(prompt, answer)`` pairs: ``sftplan_local_mc`` (pick the answer among three
    choices, metric ``acc,none``) and ``sftplan_local_gen`` (greedy answer, metric ``exact_match,none``).
    Returns task name -> metric. The JSONL files and task YAMLs are written into ``out_dir``."""
    import random

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    mc, gen = [], []
    for prompt, answer in pairs:
        wrong = [d for d in distractors if d != answer]
        choices = [answer, *rng.sample(wrong, 2)]
        rng.shuffle(choices)
        mc.append({"question": prompt, "choices": choices, "answer": choices.index(answer)})
        gen.append({"prompt": prompt, "answer": answer})
    (out / "local_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc), encoding="utf-8")
    (out / "local_gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gen), encoding="utf-8")
    common = "dataset_path: json\ntest_split: test\n"
    (out / "sftplan_local_mc.yaml").write_text(
        "task: sftplan_local_mc\n" + common +
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str((out / 'local_mc.jsonl').resolve()))}\n"
        "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\ndoc_to_choice: \"{{choices}}\"\n"
        "doc_to_target: \"{{answer}}\"\ntarget_delimiter: \" \"\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n", encoding="utf-8")
    (out / "sftplan_local_gen.yaml").write_text(
        "task: sftplan_local_gen\n" + common +
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str((out / 'local_gen.jsonl').resolve()))}\n"
        "output_type: generate_until\ndoc_to_text: \"{{prompt}}\"\ndoc_to_target: \"{{answer}}\"\n"
        "target_delimiter: \" \"\n"
        "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 16\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n", encoding="utf-8")
    return {"sftplan_local_mc": "acc,none", "sftplan_local_gen": "exact_match,none"}
