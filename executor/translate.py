"""Plan -> TrainingArguments kwargs, DeepSpeed config dict, FSDP config dict. Pure: no torch, no disk.

Every function takes a plan that ``executor.preflight.check_plan`` accepted (approved, full SFT, a
strategy in ``SUPPORTED``) and checks nothing again.

Names are transformers 5.x's (``warmup_steps`` takes a float ratio below 1, ``eval_strategy``, no
``no_cuda``). The DeepSpeed dict has no ``optimizer`` block on purpose: Trainer then builds torch
AdamW (or DeepSpeedCPUAdam when the optimizer is offloaded), so the fused_adam op never compiles;
"auto" values are filled by Trainer from the TrainingArguments, so the two never disagree.
"""

from __future__ import annotations

from advisor.models import Plan

# FSDP wraps each transformer block; Trainer/accelerate fall back to the model's own
# ``_no_split_modules`` for a family not listed here.
DECODER_LAYER = {
    "llama": "LlamaDecoderLayer", "mistral": "MistralDecoderLayer", "mixtral": "MixtralDecoderLayer",
    "qwen2": "Qwen2DecoderLayer", "gemma": "GemmaDecoderLayer", "gemma2": "Gemma2DecoderLayer",
    "phi3": "Phi3DecoderLayer", "gpt_neox": "GPTNeoXLayer",
}
DEEPSPEED_STRATEGIES = ("zero2", "zero3", "zero3-offload", "zero3-offload-all", "zero3-sp")
# Through accelerate's ParallelismConfig (TrainingArguments.parallelism_config): hsdp = FSDP2 over a 2-D mesh
# (dp_replicate x dp_shard); fsdp-tp = the model sharded at load time by transformers' DistributedConfig
# (tp_size x fsdp_size: the model's own tp_plan, FSDP2 over the data-parallel ranks); zero3-sp = ZeRO-3 with
# DeepSpeed's Ulysses sequence parallel (ALST, sp_backend "deepspeed"): each sequence split over the GPUs of a node.
PARALLELISM_STRATEGIES = ("hsdp", "fsdp-tp", "zero3-sp")
SUPPORTED = ("single", "ddp", "fsdp") + DEEPSPEED_STRATEGIES + PARALLELISM_STRATEGIES
# ZeRO-3 keeps parameters smaller than this whole on every rank. DeepSpeed's default ("auto" =
# 10 x hidden) is right for real models; below this size the whole model would stay unpartitioned
# (seen on CPU with deepspeed 0.19; tests/executor/test_distributed.py shards the tiny model), so small models are partitioned down to every tensor.
SMALL_MODEL_PARAMS = 50_000_000


def deepspeed_config(plan: Plan) -> dict | None:
    """The DeepSpeed JSON for zero2/zero3(/offload) plans, else None."""
    strategy = plan.recommended.strategy
    if strategy not in DEEPSPEED_STRATEGIES:
        return None
    zero: dict = {"stage": 2 if strategy == "zero2" else 3, "overlap_comm": True, "contiguous_gradients": True,
                  "reduce_bucket_size": "auto"}
    if zero["stage"] == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": 0 if plan.model.params < SMALL_MODEL_PARAMS else "auto",
            "stage3_gather_16bit_weights_on_model_save": True,  # checkpoints hold the full model.safetensors
        })
    if strategy in ("zero3-offload", "zero3-offload-all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if strategy == "zero3-offload-all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "wall_clock_breakdown": False,
    }


def fsdp_config(plan: Plan) -> dict | None:
    """The FSDP2 config for fsdp plans, else None.

    SHARDED_STATE_DICT: each rank saves its shard (FULL_STATE_DICT gathers everything on rank 0 at
    every save and crashes on CPU); train.py writes the gathered model.safetensors itself.
    Activation checkpointing goes through FSDP's own wrapper, not ``gradient_checkpointing``.
    cpu_ram_efficient_loading: only the first process of a node reads the checkpoint, the others start
    empty and receive the weights by broadcast (one copy in host RAM per node, not one per rank); on the
    CPU test it gives the same baseline golden loss as every rank reading the file.
    """
    if plan.recommended.strategy not in ("fsdp", "hsdp"):
        return None
    cfg: dict = {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "state_dict_type": "SHARDED_STATE_DICT",
                 "reshard_after_forward": True, "activation_checkpointing": plan.recommended.activation_checkpointing,
                 "cpu_ram_efficient_loading": True}
    layer = DECODER_LAYER.get(plan.model.family)
    if layer:
        cfg["transformer_layer_cls_to_wrap"] = [layer]
    return cfg


def parallelism_config(plan: Plan) -> dict | None:
    """accelerate ``ParallelismConfig(**this)`` for hsdp / fsdp-tp plans, else None (train.py builds the object).

    hsdp: parameters sharded over the GPUs of a node (dp_shard_size) and replicated across the nodes
    (dp_replicate_size): the all-gathers and reduce-scatters stay inside a node, gradients are all-reduced
    across nodes. fsdp-tp: tp_size GPUs of a node split every layer (the model's tp_plan), FSDP shards over
    the num_gpus / tp data-parallel ranks.
    """
    rec = plan.recommended
    if rec.strategy == "hsdp":
        return {"dp_replicate_size": rec.num_nodes, "dp_shard_size": rec.num_gpus // rec.num_nodes}
    if rec.strategy == "fsdp-tp":
        return {"dp_shard_size": rec.num_gpus // rec.tp, "tp_size": rec.tp}
    if rec.strategy == "zero3-sp":
        sp = sequence_parallel_size(plan)
        # sp_handler: accelerate's DeepSpeedSequenceParallelConfig fields (train.py builds the object); the length is
        # declared variable (the collator pads every batch to max_seq_len rounded up to a multiple of sp, which DeepSpeed
        # need not assume); sdpa is what both the CPU and a GPU without flash-attn run
        return {"dp_shard_size": rec.num_gpus // sp, "sp_size": sp, "sp_backend": "deepspeed",
                "sp_handler": {"sp_seq_length_is_variable": True, "sp_attn_implementation": "sdpa"}}
    return None


def sequence_parallel_size(plan: Plan) -> int:
    """zero3-sp: the Ulysses degree is the GPUs of a node (num_gpus / num_nodes), so each all-to-all stays on the
    node's links (DeepSpeed-Ulysses, arXiv 2309.14509, runs it inside a node; ALST, arXiv 2506.13996, sec. 3);
    ZeRO-3 shards the states over all GPUs and the nodes are the data-parallel replicas of a sequence. 1 otherwise."""
    from advisor.memory import plan_ulysses_degree

    rec = plan.recommended
    return plan_ulysses_degree(rec.strategy, rec.num_gpus, rec.num_nodes)


def distributed_config(plan: Plan) -> dict | None:
    """transformers ``DistributedConfig(**this)`` for ``from_pretrained`` (fsdp-tp only, else None): the model is
    tensor-parallel-sharded by its own ``base_model_tp_plan`` and FSDP2-sharded over the data-parallel ranks
    while it loads. Trainer then finds the model's tp size and builds the matching ParallelismConfig."""
    rec = plan.recommended
    if rec.strategy != "fsdp-tp":
        return None
    return {"tp_size": rec.tp, "fsdp_size": rec.num_gpus // rec.tp}


def training_arguments(plan: Plan, run_dir: str, *, bf16: bool, accelerator: bool, seed: int = 42,
                       deepspeed_path: str | None = None) -> dict:
    """TrainingArguments(**kwargs) for the plan.

    ``bf16``: the device supports it (decided at runtime by train.py). ``accelerator``: a GPU-like
    device is present; without one the run is on CPU with the gloo backend. ``deepspeed_path``: where
    the DeepSpeed JSON was written (TrainingArguments takes a path or a dict).
    """
    rec, hp = plan.recommended, plan.hyperparameters
    fsdp = fsdp_config(plan)
    ds = deepspeed_config(plan)
    kwargs: dict = {
        "output_dir": run_dir,
        "num_train_epochs": hp.epochs,
        "per_device_train_batch_size": rec.micro_batch_size,
        "gradient_accumulation_steps": rec.grad_accum,
        "learning_rate": hp.learning_rate,
        "lr_scheduler_type": hp.lr_scheduler,
        "warmup_steps": hp.warmup_ratio,  # transformers 5.x: a float below 1 is a ratio of the total steps
        "weight_decay": hp.weight_decay,
        "max_grad_norm": 1.0,
        "bf16": bf16,
        "activation_checkpointing": rec.activation_checkpointing and fsdp is None,  # 5.x name of gradient_checkpointing
        "save_strategy": "epoch",
        "save_total_limit": plan.checkpointing.keep_last,
        "eval_strategy": "no",  # the golden set is scored by the eval-gate callback
        "logging_strategy": "steps",
        "logging_steps": 1,
        "logging_nan_inf_filter": False,  # the logged loss is the real one: a NaN stops the run (train_callbacks.py)
        "report_to": "none",
        "disable_tqdm": True,  # rank 0 shows its own progress line
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "seed": seed,
        "data_seed": seed,
    }
    if fsdp is not None:
        kwargs.update(fsdp=True, fsdp_config=fsdp)
    pc = parallelism_config(plan)
    if pc is not None:
        kwargs["parallelism_config"] = pc  # a dict here (JSON); train.py passes ParallelismConfig(**it)
    if rec.strategy == "fsdp-tp":
        # Trainer refuses to checkpoint more than the model of a model sharded at load time; the executor's
        # Trainer (executor/tp_checkpoint.py) adds every rank's model and optimizer shards, so the run resumes
        kwargs["save_only_model"] = True
    if ds is not None:
        kwargs["deepspeed"] = deepspeed_path or ds
    if not accelerator:
        # CPU: gloo. A single process runs plain CPU; distributed CPU runs keep use_cpu False so the
        # cpu_dist shims can hand accelerate an FSDP / DeepSpeed state (see executor/cpu_dist.py).
        world = rec.num_gpus * rec.num_nodes
        kwargs["use_cpu"] = world == 1
        kwargs["dataloader_pin_memory"] = False
        if world > 1:  # a backend for one process would make accelerate expect a process group
            kwargs["ddp_backend"] = "gloo"
    return kwargs
