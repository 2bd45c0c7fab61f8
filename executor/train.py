"""Per-rank entry point: a straight line from the approved plan to trained epoch checkpoints.

Started by the launcher that `sftplan run` writes into RUN_DIR/config/launch.sh, e.g.::

    torchrun --nproc_per_node 2 -m executor.train --run-dir RUN_DIR
    deepspeed --num_gpus 2 --module executor.train --run-dir RUN_DIR

Every rank first verifies what it is about to use (executor/integrity.py): RUN_DIR/plan.yaml (hash,
approval, the plan config/inputs.json was written for), the training and golden files (the approved
bytes copied into RUN_DIR/data/), the base model's files (sha256 recorded in the plan); any mismatch
is one line on stderr and exit code 2. Then, in order: distributed setup, TrainingArguments (before
the model, so ZeRO-3 can partition it while loading; rank 0 writes the kwargs to
config/training_args.json), resume point (rank 0 sets aside checkpoints whose COMPLETE hashes fail),
tokenizer, data, model, Trainer + callbacks, train, and the result file. A non-finite loss or gradient
norm ends the run at that step (train_result.json "failed", exit code 3). Per epoch, after Trainer
has written ``checkpoint-<step>`` (callbacks in executor/train_callbacks.py):

1. under FSDP's sharded state dict the full weights are gathered and rank 0 writes
   model.safetensors, config.json and the tokenizer (ZeRO-3 writes its own gathered 16-bit weights);
2. every rank scores the golden set, rank 0 records the epoch's gate verdict in gate.json;
3. rank 0 writes ``COMPLETE`` last, with every file's sha256. A checkpoint without it, or whose files
   no longer match it, is never resumed from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from executor import names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m executor.train")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="set by the deepspeed launcher")
    return p.parse_known_args(argv)[0]


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def log(msg: str) -> None:
    if rank() == 0:
        print(f"[sftplan] {msg}", flush=True)


def latest_complete_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step; incomplete ones never count."""
    done = [p for p in names.checkpoints(run_dir) if names.has_marker(p)]
    return done[-1] if done else None


def remove_incomplete_checkpoints(run_dir: Path) -> list[str]:
    """Rank 0, before training: a checkpoint cut off while being written is deleted, never resumed."""
    notes = []
    for p in names.checkpoints(run_dir):
        if not names.has_marker(p):
            shutil.rmtree(p, ignore_errors=True)
            notes.append(f"removed incomplete {p.name} (no {names.COMPLETE} marker: interrupted while being written)")
    return notes


def resume_notes(run_dir: Path, damaged: list[dict], plan_sha256: str) -> list[str]:
    """Rank 0: complete checkpoints that fail their COMPLETE hashes, step or plan are set aside and said (log +
    run.json notes)."""
    from executor.integrity import set_aside_damaged

    notes, found = set_aside_damaged(run_dir, plan_sha256)
    damaged += found
    for note in notes:
        log(note)
    return notes


def setup_distributed() -> tuple[bool, list[str]]:
    """(accelerator present, notes). On a CPU-only multi-process job, install the cpu_dist shims."""
    import torch

    from executor import cpu_dist

    accelerator = torch.cuda.is_available()
    notes = cpu_dist.apply() if cpu_dist.needed() else []
    return accelerator, notes


def training_kwargs(plan, run_dir: Path, *, accelerator: bool) -> dict:
    """TrainingArguments kwargs for this node: the plan's, with bf16 on where the device supports it."""
    import torch

    from executor.translate import training_arguments

    bf16 = bool(accelerator and torch.cuda.is_bf16_supported())
    ds_path = run_dir / names.CONFIG / names.DEEPSPEED
    return training_arguments(plan, str(run_dir), bf16=bf16, accelerator=accelerator,
                              deepspeed_path=str(ds_path) if ds_path.is_file() else None)


def setup_training_args(plan, run_dir: Path, *, accelerator: bool):
    """TrainingArguments(**kwargs); rank 0 first writes exactly those kwargs to config/training_args.json."""
    from transformers import TrainingArguments

    from advisor.yamlio import atomic_write_text

    kwargs = training_kwargs(plan, run_dir, accelerator=accelerator)
    if rank() == 0:
        atomic_write_text(run_dir / names.CONFIG / names.TRAINING_ARGS, json.dumps(kwargs, indent=2) + "\n")
    if kwargs.get("parallelism_config") is not None:  # hsdp / fsdp-tp: the JSON's dict becomes accelerate's object
        from accelerate import ParallelismConfig

        pc = dict(kwargs["parallelism_config"])
        if pc.get("sp_handler") is not None:  # zero3-sp: DeepSpeed Ulysses' settings
            from accelerate.utils import DeepSpeedSequenceParallelConfig

            pc["sp_handler"] = DeepSpeedSequenceParallelConfig(**pc["sp_handler"])
        kwargs["parallelism_config"] = ParallelismConfig(**pc)
    return TrainingArguments(**kwargs)


def setup_tokenizer(model_dir: str, revision: str | None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, revision=revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def setup_data(plan, tokenizer, train_path: str, golden_path: str, seed: int):
    from executor.data import build_train_data
    from executor.evalgate import load_golden
    from executor.translate import sequence_parallel_size
    from advisor.rows import read_rows_at

    at = read_rows_at(train_path)
    dataset, collator, enc = build_train_data(tokenizer, [m for _, m in at], max_seq_len=plan.hyperparameters.max_seq_len,
                                              packing=plan.request.packing, seed=seed,
                                              # rows are named by the approved file (the staged copy is byte-identical)
                                              source=plan.request.dataset.file.path if plan.request.dataset.file
                                              else str(train_path),
                                              lines=[line for line, _ in at],
                                              over_max_seq_len=plan.request.dataset.over_max_seq_len,
                                              sp=sequence_parallel_size(plan))
    return dataset, collator, enc, load_golden(golden_path)


def setup_model(plan, model_dir: str, revision: str | None, *, bf16: bool, seed: int = 42):
    import torch
    from transformers import AutoModelForCausalLM

    pure = bf16 and plan.recommended.precision == "bf16-pure"
    if plan.method == "lora":  # frozen weights in bf16 where the device has it; peft keeps the adapter in fp32
        pure = bf16
    from executor.translate import distributed_config

    load: dict = {}
    dist = distributed_config(plan)
    if dist is not None:  # fsdp-tp: sharded while loading (the model's tp_plan x FSDP2), on the launcher's ranks
        from transformers.distributed import DistributedConfig

        # bf16 devices: FSDP2 gathers bf16 copies of the fp32 shards and reduces in fp32, as accelerate's FSDP does
        # (the memory and throughput models count 2 bytes per gathered parameter)
        load["distributed_config"] = DistributedConfig(**dist, fsdp_mixed_precision=bf16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, revision=revision, dtype=torch.bfloat16 if pure else torch.float32,
                                                 **load)
    model.config.use_cache = False  # a KV cache in training turns off the packed-sequence mask (data.py)
    if not pure:  # fp32 weights: MoE experts in the autocast dtype, like every other matmul (executor/moe.py)
        from executor.moe import use_autocast_experts

        use_autocast_experts(model)
    if plan.method == "lora":
        from executor.lora import wrap

        model = wrap(model, plan, seed=seed)
    return model


def peak_memory() -> tuple[int, str]:
    """(bytes, kind): accelerator max allocated, else this process's peak RSS."""
    import resource

    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated()), "accelerator max allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process RSS"


def stop_non_finite(run_dir: Path, trainer, why: str, **result) -> int:
    """A non-finite loss / gradient norm: one line, train_result.json says "failed", nothing of this step saved."""
    last = latest_complete_checkpoint(run_dir)
    line = f"{why}; run stopped, the last complete checkpoint ({last.name if last else 'none'}) is intact"
    print(f"sftplan: {line}", file=sys.stderr, flush=True)
    write_result(run_dir, trainer, stopped=False, failed=line, **{**result, "notes": result["notes"] + [line]})
    return 3


def write_result(run_dir: Path, trainer, *, stopped: bool, resumed_from: Path | None, notes: list[str],
                 damaged: list[dict], failed: str | None = None) -> None:
    if not trainer.is_world_process_zero():
        return
    state = trainer.state
    result = {"global_step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch,
              "stopped": stopped, "resumed_from": resumed_from.name if resumed_from else None, "notes": notes,
              "damaged_checkpoints": damaged, "failed": failed,
              "latest_complete": (latest_complete_checkpoint(run_dir) or Path("")).name or None}
    tmp = run_dir / f".{names.RESULT}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, run_dir / names.RESULT)


def main(argv: list[str] | None = None) -> int:
    """Train; a refusal or a damaged input is one line on stderr and exit code 2, never a traceback."""
    from advisor.errors import UserError

    args = parse_args(argv)
    from executor.oom_guard import allocator_defaults

    log(allocator_defaults())  # before any CUDA allocation: the allocator reads it once
    from executor.lifecycle import worker_start

    worker_start()  # SIGTERM/SIGHUP/SIGINT and the launcher's death: stop at the next step, on every rank
    try:
        return train(Path(args.run_dir).resolve())
    except UserError as exc:
        print(f"sftplan: {exc}", file=sys.stderr, flush=True)
        return 2


def train(run_dir: Path) -> int:
    from executor.integrity import verify_data, verify_model, verify_run_plan

    checked, inputs = verify_run_plan(run_dir)  # every rank, every node: the approved plan or nothing
    plan = checked.plan
    data = verify_data(plan, inputs)  # ... and the approved data bytes
    model_id, revision, model_notes = verify_model(plan, inputs)  # ... and the approved base model
    accelerator, notes = setup_distributed()
    notes += model_notes
    log(model_notes[0])
    training_args = setup_training_args(plan, run_dir, accelerator=accelerator)  # inits the process group
    damaged: list[dict] = []
    if training_args.process_index == 0:
        notes += remove_incomplete_checkpoints(run_dir)
        notes += resume_notes(run_dir, damaged, plan.plan_sha256)
    from executor.train_callbacks import barrier

    barrier()
    resume = latest_complete_checkpoint(run_dir)  # complete and verified (rank 0 set the damaged ones aside)
    tokenizer = setup_tokenizer(model_id, revision)
    dataset, collator, enc, golden = setup_data(plan, tokenizer, data["train"], data["golden"], training_args.seed)
    notes += enc.notes
    log(f"data: {enc.rows} rows, {enc.tokens} tokens ({enc.label_tokens} trained on), {len(dataset)} sequences")
    model = setup_model(plan, model_id, revision, bf16=training_args.bf16, seed=training_args.seed)
    from executor.lifecycle import signal_stop_callback

    signal_stop = signal_stop_callback()
    trainer = setup_trainer(run_dir, plan, model, training_args, dataset, collator, tokenizer, golden,
                            resumed=resume is not None, extra_callbacks=[signal_stop])
    if resume:
        log(f"resuming from {resume.name} (latest complete checkpoint)")
    started = time.time()
    from executor import oom_guard
    from executor.train_callbacks import NonFiniteTraining

    try:
        with oom_guard.guard(run_dir, plan, trainer):  # out of memory: one line, oom.json, exit code 3
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except NonFiniteTraining as exc:
        return stop_non_finite(run_dir, trainer, str(exc), resumed_from=resume, notes=notes, damaged=damaged)
    stopped = trainer.state.global_step < trainer.state.max_steps
    if signal_stop.stopped_by:
        notes.append(f"stopped by {signal_stop.stopped_by} at step {trainer.state.global_step}")
    log((f"stopped ({signal_stop.stopped_by})" if signal_stop.stopped_by else
         "stopped at the epoch boundary (STOP)" if stopped else "finished") +
        f" at step {trainer.state.global_step} in {time.time() - started:.1f} s")
    write_result(run_dir, trainer, stopped=stopped, resumed_from=resume, notes=notes, damaged=damaged)
    barrier()
    return 0


def exit_without_teardown(code: int) -> None:
    """Every rank, once train() has returned (each rank passed the last barrier, every file is written): flush and
    leave with os._exit, skipping the interpreter's teardown of the process group. Left to that teardown, gloo's
    threads are destroyed in no fixed order and a rank of a finished run could abort ("terminate called without an
    active exception", signal 6: the launcher then reported the run failed); destroying the group ourselves
    deadlocked instead (~ProcessGroupGloo joins a gloo thread waiting for the GIL its caller holds)."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def setup_trainer(run_dir: Path, plan, model, training_args, dataset, collator, tokenizer, golden, *, resumed: bool,
                  extra_callbacks: list | None = None):
    from transformers import PrinterCallback, Trainer

    if plan.recommended.strategy == "fsdp-tp":  # sharded at load time: every rank's shards, so that it resumes
        from executor.tp_checkpoint import tensor_parallel_trainer_class

        Trainer = tensor_parallel_trainer_class()  # noqa: N806 - the class Trainer stands for

    from executor import oom_guard
    from executor.lora import lora_callbacks
    from executor.sp_epoch import sequence_parallel_callbacks
    from executor.train_callbacks import (
        GateCallback, MetricsCallback, NonFiniteCallback, ShardReportCallback, StopCallback,
    )

    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator,
                      processing_class=tokenizer,
                      callbacks=[*lora_callbacks(plan, run_dir), ShardReportCallback(run_dir, plan.recommended.strategy),
                                 GateCallback(run_dir, plan, tokenizer, golden, resumed=resumed),
                                 MetricsCallback(run_dir, collator, peak_memory), NonFiniteCallback(),
                                 StopCallback(run_dir), oom_guard.memory_check_callback(run_dir, plan),
                                 *sequence_parallel_callbacks(plan.recommended.strategy), *(extra_callbacks or [])])
    trainer.remove_callback(PrinterCallback)  # MetricsCallback prints the progress line
    return trainer


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from executor.lifecycle import guarded

    exit_without_teardown(guarded(main, lambda: Path(parse_args(None).run_dir).resolve()))
