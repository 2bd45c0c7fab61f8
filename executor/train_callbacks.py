"""The TrainerCallbacks of executor/train.py: shard report, metrics + progress, eval gate + COMPLETE, STOP.

Every callback runs on every rank; collective work (gathering FSDP weights, scoring a sharded model,
agreeing on STOP) is done by all ranks, files are written by rank 0 only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from executor import names


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    if dist := _dist():
        dist.barrier()


def world_size() -> int:
    return dist.get_world_size() if (dist := _dist()) else 1


def is_rank0() -> bool:
    return dist.get_rank() == 0 if (dist := _dist()) else True


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    dist = _dist()
    if dist is None:
        return flag
    import torch

    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


class ShardReportCallback(TrainerCallback):
    """Each rank writes RUN_DIR/shards/rank-<r>.json: how many parameter elements it really holds.

    FSDP2 parameters are DTensors (local shard = ``to_local()``); ZeRO-3 parameters carry ``ds_tensor``
    (the local partition) and ``ds_numel`` (the full size); optimizer_report says what steps them. Tests assert on
    these files.

    zero3-sp also writes RUN_DIR/shards/sp-rank-<r>.json: what the model saw in its first SP_TRACE training
    forwards on this rank (its slice of the input ids, their position ids, its shifted labels, its local loss),
    so a test can check that the ranks of a sequence-parallel group hold consecutive slices of one sequence.
    """

    SP_TRACE = 4

    def __init__(self, run_dir: Path, strategy: str):
        self.run_dir, self.strategy = run_dir, strategy
        self.sp_seen: list[dict] = []

    def _sp_hook(self, module, args, kwargs, output):
        if not module.training or "shift_labels" not in kwargs or len(self.sp_seen) >= self.SP_TRACE:
            return
        self.sp_seen.append({k: kwargs[k].tolist() for k in ("input_ids", "position_ids", "shift_labels")}
                            | {"loss": float(output.loss.detach())})
        r = int(os.environ.get("RANK", "0"))
        (self.run_dir / names.SHARDS / f"sp-rank-{r}.json").write_text(json.dumps(self.sp_seen) + "\n")

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.strategy == "zero3-sp":
            model.register_forward_hook(self._sp_hook, with_kwargs=True)
        local = full = 0
        kinds = set()
        layout: dict = {}  # the first DTensor parameter's mesh and placements (hsdp: Replicate + Shard; fsdp-tp: 2-D)
        for p in model.parameters():
            if hasattr(p, "to_local") and not layout:
                layout = {"mesh_dim_names": list(p.device_mesh.mesh_dim_names or ()),
                          "mesh_shape": list(p.device_mesh.mesh.shape), "placements": [repr(x) for x in p.placements]}
            if hasattr(p, "ds_tensor"):
                local += p.ds_tensor.numel()
                full += p.ds_numel
                kinds.add("zero3-partition")
            elif hasattr(p, "to_local"):
                local += p.to_local().numel()
                full += p.numel()
                kinds.add("dtensor")
            else:
                local += p.numel()
                full += p.numel()
                kinds.add("tensor")
        out = self.run_dir / names.SHARDS
        out.mkdir(exist_ok=True)
        r = int(os.environ.get("RANK", "0"))
        (out / f"rank-{r}.json").write_text(json.dumps(
            {"rank": r, "world_size": world_size(), "strategy": self.strategy, "local_param_numel": local,
             "full_param_numel": full, "param_kinds": sorted(kinds), "dtensor_layout": layout}
            | optimizer_report(optimizer)) + "\n")


def optimizer_report(optimizer) -> dict:
    """What steps the parameters: the optimizer's wrapper chain (accelerate's AcceleratedOptimizer -> DeepSpeed's ZeRO
    optimizer -> the base optimizer, e.g. DeepSpeedCPUAdam under offload) and ZeRO-3's own offload flags
    (DeepSpeedZeroOptimizer_Stage3.offload_optimizer / offload_param: {} where the optimizer is not ZeRO-3's)."""
    chain: list[str] = []
    offload: dict = {}
    while optimizer is not None and len(chain) < 6:
        chain.append(type(optimizer).__name__)
        if not offload and hasattr(optimizer, "offload_optimizer"):
            offload = {"optimizer": bool(optimizer.offload_optimizer),
                       "param": bool(getattr(optimizer, "offload_param", False))}
        optimizer = getattr(optimizer, "optimizer", None)
    return {"optimizer_chain": chain, "zero_offload": offload}


def _torch_threads() -> int:
    """Intra-op threads of this process (with 1, its CPU time per step is the step's uncontended time)."""
    import torch

    return torch.get_num_threads()


class MetricsCallback(TrainerCallback):
    """Rank 0 appends one metrics.jsonl row per logged step and prints a progress line.

    Must come after GateCallback in the callback list, so golden scoring is not counted as step time.
    """

    def __init__(self, run_dir: Path, collator, peak_memory):
        self.run_dir, self.collator, self.peak_memory = run_dir, collator, peak_memory
        self.tokens = 0  # real tokens of the micro-batches this rank has trained on
        self.started = time.time()
        self.last_time = self.last_tokens = None
        self.last_cpu = 0.0
        self.step_times: list[float] = []
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._restart_clock(state)

    def on_save(self, args, state, control, **kwargs):  # runs after GateCallback's: scoring is not a step
        self._restart_clock(state)

    def _restart_clock(self, state) -> None:
        self.last_time, self.last_tokens, self.last_step = time.time(), self.tokens, state.global_step
        self.last_cpu = time.process_time()  # this process's CPU seconds: a step's cost without the neighbours' load

    def _consumed(self) -> None:  # one micro-batch trained on: its count is the oldest queued
        if self.collator.batch_tokens:
            self.tokens += self.collator.batch_tokens.popleft()

    def on_substep_end(self, args, state, control, **kwargs):
        self._consumed()

    def on_step_end(self, args, state, control, **kwargs):
        self._consumed()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now, tokens, cpu = time.time(), self.tokens, time.process_time()  # this rank's real (non-pad) tokens
        steps = max(state.global_step - self.last_step, 1)
        step_time = (now - self.last_time) / steps
        cpu_time = (cpu - self.last_cpu) / steps
        self.last_cpu = cpu
        tps = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_tokens, self.last_step = now, tokens, state.global_step
        self.step_times.append(step_time)
        peak, kind = self.peak_memory()
        row = {"epoch": round(float(state.epoch or 0), 4), "step": state.global_step, "loss": float(logs["loss"]),
               "learning_rate": float(logs.get("learning_rate", 0.0)), "tokens_per_s_per_gpu": round(tps, 2),
               "step_time_s": round(step_time, 5), "cpu_time_s": round(cpu_time, 5), "torch_threads": _torch_threads(),
               "peak_memory_bytes": peak, "peak_memory_kind": kind,
               "elapsed_s": round(now - self.started, 3)}
        _append_jsonl(self.run_dir / names.METRICS, row)
        recent = sorted(self.step_times[-20:])[len(self.step_times[-20:]) // 2]
        eta = max(state.max_steps - state.global_step, 0) * recent
        self.console.print(
            f"[bold]epoch[/] {row['epoch']:.2f}/{args.num_train_epochs:g}  [bold]step[/] {state.global_step}/"
            f"{state.max_steps}  [bold]loss[/] {row['loss']:.4f}  [bold]tok/s[/] {tps:,.0f}  "
            f"[bold]ETA[/] {int(eta // 60)}:{int(eta % 60):02d}  [dim]peak {peak / 2**20:,.0f} MiB[/]")


class GateCallback(TrainerCallback):
    """Golden baseline before training; per epoch: full weights, golden score + verdict, then COMPLETE.

    The best passing epoch's checkpoint is kept out of keep_last rotation (as Trainer's
    best_model_checkpoint), so `sftplan promote` can always export it.
    """

    def __init__(self, run_dir: Path, plan, tokenizer, golden, *, resumed: bool):
        self.run_dir, self.plan, self.tokenizer, self.golden = run_dir, plan, tokenizer, golden
        self.resumed = resumed

    def _score(self, model) -> dict:
        from executor.evalgate import score_golden

        return score_golden(model, self.tokenizer, self.golden, max_new_tokens=self.plan.evaluation.max_new_tokens,
                            synced_gpus=world_size() > 1)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """The baseline belongs to the base model: scored once, before any training, into baseline.json (with the
        plan's hash, which covers the base model's file hashes); a resume takes it from there, never re-scores."""
        from advisor.errors import UserError
        from executor.evalgate import read_gate, record_baseline
        from executor.integrity import read_baseline, write_baseline

        baseline = read_baseline(self.run_dir, self.plan)
        if baseline is None:
            if self.resumed:
                raise UserError(f"{self.run_dir / names.BASELINE}: missing on a resumed run: the golden baseline "
                                "belongs to the base model and cannot be re-scored on a resumed checkpoint")
            baseline = self._score(model)
            if is_rank0():
                write_baseline(self.run_dir, self.plan, baseline)
                print(f"[sftplan] golden baseline: {_fmt(baseline)}", flush=True)
        if is_rank0() and read_gate(self.run_dir).get("baseline") != baseline:
            record_baseline(self.run_dir, baseline, self.plan.evaluation, replace=True)

    def _write_full_weights(self, ckpt: Path, model) -> None:
        """FSDP sharded state dict: gather the full weights (all ranks) and save them from rank 0."""
        if not any(hasattr(p, "to_local") for p in model.parameters()):
            return
        if getattr(model, "is_distributed_loading_by_transformers", False):
            # fsdp-tp: sharded at load time, Trainer's save_pretrained already gathered the full weights on every
            # rank and wrote them once; a second save_pretrained on rank 0 alone would wait forever in its
            # closing barrier (transformers' barrier_after_gathered_checkpoint_save)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if is_rank0():
            model.save_pretrained(ckpt, state_dict=sd)

    def on_save(self, args, state, control, model=None, **kwargs):
        from executor.evalgate import best_passing_epoch, record_epoch

        ckpt = self.run_dir / names.checkpoint_name(state.global_step)
        self._write_full_weights(ckpt, model)
        if is_rank0():
            if not (ckpt / "config.json").is_file():
                model.config.save_pretrained(ckpt)
            if not (ckpt / "tokenizer_config.json").is_file():
                self.tokenizer.save_pretrained(ckpt)
        score = self._score(model)
        if is_rank0():
            verdict = record_epoch(self.run_dir, epoch=float(state.epoch or 0), step=state.global_step,
                                   checkpoint=ckpt.name, score=score, evaluation=self.plan.evaluation)
            best = best_passing_epoch(self.run_dir)
            if best is not None:  # Trainer's keep_last rotation never deletes state.best_model_checkpoint
                state.best_model_checkpoint = str(self.run_dir / best["checkpoint"])
            mark = "PASS" if verdict["passed"] else "FAIL: " + "; ".join(verdict["reasons"])
            print(f"[sftplan] epoch {state.epoch:.0f} {ckpt.name} golden {_fmt(score)} gate {mark}", flush=True)
        barrier()  # every rank's shard of the checkpoint is on disk
        if is_rank0():
            if not list(ckpt.glob("*.safetensors")):
                raise RuntimeError(f"{ckpt}: no model.safetensors after saving; refusing to mark it complete")
            names.write_complete(ckpt, step=state.global_step, epoch=state.epoch,  # every file's sha256, last
                                 plan_sha256=self.plan.plan_sha256)
        barrier()


class NonFiniteTraining(Exception):
    """A non-finite training loss or gradient norm: the run stops at once, before this step could be saved."""


class NonFiniteCallback(TrainerCallback):
    """Every logged step (logging_steps=1): loss and grad_norm must be finite, else NonFiniteTraining is raised on
    every rank alike (Trainer logs the loss averaged over ranks and the global gradient norm), before any checkpoint
    of this step is written: the last complete checkpoint stays the newest."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        import math

        for key, what in (("loss", "training loss"), ("grad_norm", "gradient norm")):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise NonFiniteTraining(f"non-finite {what} at step {state.global_step}: {value}")


class StopCallback(TrainerCallback):
    """RUN_DIR/STOP asks a clean stop at the next epoch boundary (after that epoch's checkpoint)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_epoch_end(self, args, state, control, **kwargs):
        if any_rank((self.run_dir / names.STOP).exists()):
            control.should_training_stop = True
            control.should_save = True
            if is_rank0():
                print("[sftplan] STOP found: stopping after this epoch's checkpoint", flush=True)


def _fmt(score: dict) -> str:
    return f"loss {score['loss']:.4f} exact {score['exact_match']:.3f} contains {score['contains']:.3f}"
