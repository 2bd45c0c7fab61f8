"""`sftplan estimate`: will full SFT of this model fit on these GPUs, and how fast will it run."""

from __future__ import annotations

import argparse
import json
import sys

from advisor.errors import UserError
from advisor.specs import STRATEGIES, TrainConfig, check_tensor_parallel


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "estimate",
        help="memory per GPU, tokens/s, MFU and step time of one configuration",
        description="Estimate memory per GPU (by component), host memory for offload, tokens/s, MFU and step time.",
    )
    p.add_argument("--model", required=True, help="preset id, size such as 8B, config.json or model directory")
    p.add_argument("--gpu", default=None, help="GPU tier id (see `sftplan catalog`); required")
    p.add_argument("--num-gpus", type=int, default=1)
    p.add_argument("--strategy", default=None, help=f"one of {', '.join(STRATEGIES)} (default: single for 1 GPU, else fsdp)")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--activation-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--precision", default="bf16-mixed", help="bf16-mixed (default) or bf16-pure")
    p.add_argument("--tp", type=int, default=1, help="tensor parallel size (megatron, fsdp-tp)")
    p.add_argument("--pp", type=int, default=1, help="pipeline parallel size (megatron)")
    p.add_argument("--loss-chunks", type=int, default=1, help="chunked cross-entropy chunks (1 = full logits)")
    p.add_argument("--network-gbps", type=float, default=None,
                   help="the cluster's network per node in Gbit/s, all NICs (default: the catalog tier's)")
    p.add_argument("--memory-headroom", type=float, default=0.10,
                   help="fraction of GPU memory kept free; a fit must leave it (default 0.10, 0-0.5)")
    p.add_argument("--lora", action="store_true",
                   help="LoRA r=16 with DoRA, as the plans use: frozen bf16 base, fp32 adapter (with --trace: peft traced)")
    p.add_argument("--trace", action="store_true",
                   help="also trace one training step of the real model on fake tensors (train extra; no GPU, no weights)")
    p.add_argument("--calibration", metavar="YAML", default=None,
                   help="correction factors from finished runs (`sftplan calibrate`; default: $SFTPLAN_CALIBRATION)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def build(args: argparse.Namespace):
    """(model, gpu, config) from the flags. TrainConfig's own validation checks the numbers and their
    combinations (a SpecError names its field; advisor/cli/fields.py maps it to the flag); only what
    needs the catalog or the model is checked here."""
    from advisor.architecture import resolve_model
    from advisor.catalog import load_catalog

    model = resolve_model(args.model)  # first: an unknown name lists the presets whatever else is missing
    parallel = args.tp * args.pp if args.tp > 0 and args.pp > 0 else 1
    strategy = args.strategy or ("single" if args.num_gpus == 1 and parallel == 1 else
                                 "megatron" if parallel > 1 else "fsdp")
    cfg = TrainConfig(
        num_gpus=args.num_gpus, strategy=strategy, precision=args.precision, seq_len=args.seq_len,
        micro_batch_size=args.micro_batch, grad_accum=args.grad_accum,
        activation_checkpointing=args.activation_checkpointing, tp=args.tp, pp=args.pp, loss_chunks=args.loss_chunks,
        memory_headroom=args.memory_headroom, trainable="lora" if getattr(args, "lora", False) else "full",
    )
    catalog = load_catalog()
    if args.gpu is None:
        raise UserError(f"required: a GPU tier id (one of {', '.join(catalog.gpus)})", field="gpu")
    gpu = catalog.gpu(args.gpu)
    if args.network_gbps is not None:
        if not args.network_gbps > 0:
            raise UserError(f"must be > 0, got {args.network_gbps:g}", field="network_gbps")
        from advisor.throughput import with_network

        gpu = with_network(gpu, args.network_gbps)
    check_tensor_parallel(model, cfg)
    if cfg.seq_len > model.max_context:
        raise UserError(f"{cfg.seq_len} exceeds {model.name}'s context of {model.max_context} tokens", field="seq_len")
    gpu.check_scales_to(cfg.num_gpus)
    return model, gpu, cfg


def to_json(est, model, gpu) -> dict:
    from advisor.memory import num_nodes
    from advisor.memory_overheads import overhead_sources
    from advisor.units import GIB

    return {
        "model": model.name,
        "model_source": model.source,
        "gpu": gpu.id,
        "num_gpus": est.config.num_gpus,
        "num_nodes": num_nodes(est.config, gpu),
        "strategy": est.config.strategy,
        "fits": est.fits,
        "memory_per_gpu_gib": round(est.memory_per_gpu_bytes / GIB, 3),
        "hbm_gib": gpu.hbm_gib,
        "headroom_gib": round(est.headroom_bytes / GIB, 3),
        "headroom_fraction": round(est.headroom_bytes / est.hbm_bytes, 4),
        "memory_headroom": est.config.memory_headroom,
        "usable_gib": round(est.usable_bytes / GIB, 3),
        "tight": est.tight,
        "memory_breakdown_gib": {k: round(v / GIB, 3) for k, v in est.memory.to_dict().items()},
        "memory_sources": overhead_sources(gpu, est.config),
        "memory_levels_gib": memory_levels_gib(est),
        "cpu_memory_per_node_gib": round(est.cpu_memory_per_node_bytes / GIB, 3),
        "host_ram_gib_per_node": gpu.host_ram_gib_per_node,
        "cpu_fits": est.cpu_fits,
        "tokens_per_s_per_gpu": round(est.tokens_per_s_per_gpu, 1),
        "mfu": round(est.mfu, 4),
        "step_time_s": round(est.step_time_s, 4),
        "bottleneck": est.bottleneck,
        "model_params": est.model_params,
        "active_params": est.active_params,
        "flops_per_token": est.flops_per_token,
        "notes": est.notes,
        "raw_memory_per_gpu_gib": round(est.raw_memory_per_gpu_bytes / GIB, 3),
        "raw_tokens_per_s_per_gpu": round(est.raw_tokens_per_s_per_gpu, 1),
        "calibration": est.calibration or None,
    }


def memory_levels_gib(est) -> dict[str, float]:
    """The estimate at the level each counter holds: torch.cuda.max_memory_allocated (tensors and cuBLAS
    workspaces), max_memory_reserved (+ the allocator's fragmentation), the device (+ CUDA context, NCCL).
    On the cpu tier the device level is the process RSS: the host runtime is in it alone."""
    from advisor.units import GIB

    m, total = est.memory, est.memory_per_gpu_bytes
    outside = m.cuda_context + m.nccl_buffers + m.host_runtime
    return {"allocated": round((total - outside - m.fragmentation) / GIB, 3),
            "reserved": round((total - outside) / GIB, 3), "device": round(total / GIB, 3)}


def run_note(cfg) -> str | None:
    """Why `sftplan run` would not run this configuration (advisor/run_limits.py, as `plan` refuses it); None: it
    would. An estimate is still given: what-ifs are what `estimate` is for."""
    from advisor.run_limits import ESTIMATED_ONLY, estimated_only_reason, run_refusal

    if cfg.strategy in ESTIMATED_ONLY:
        return estimated_only_reason(cfg.strategy)
    why = run_refusal(cfg.strategy, "lora" if cfg.trainable == "lora" else "full-sft", False)
    return f"`sftplan run` would refuse it: {why}" if why else None


def run(args: argparse.Namespace) -> int:
    from advisor.estimate import estimate

    model, gpu, cfg = build(args)
    est = estimate(model, gpu, cfg, calibration=_calibration(args, model, gpu, cfg))
    data = to_json(est, model, gpu)
    data["runs"] = run_note(cfg)
    if getattr(args, "trace", False):
        data["trace"] = _trace(model, est)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    _print_table(data, model)
    if "trace" in data:
        _print_trace(data["trace"])
    if data["runs"]:
        sys.stderr.write(f"sftplan: note: {data['runs']}\n")
    return 0


def _calibration(args: argparse.Namespace, model, gpu, cfg):
    """The factors of this configuration's class from --calibration (or $SFTPLAN_CALIBRATION), or None."""
    import os

    path = getattr(args, "calibration", None) or os.environ.get("SFTPLAN_CALIBRATION")
    if not path:
        return None
    from advisor import calibration
    from advisor.architecture import param_count

    key = calibration.class_key(gpu.id, cfg.strategy, cfg.precision, cfg.trainable, param_count(model))
    return calibration.applied(calibration.load(path), key)


def _trace(model, est) -> dict:
    """Traced figures beside the analytic ones, by component group (GiB per rank)."""
    from advisor.units import GIB

    cfg, mem = est.config, est.memory
    try:
        from executor import memtrace
    except ImportError as exc:  # torch / transformers missing
        raise UserError(f"--trace: needs the train extra (pip install '.[train]'): {exc}") from None
    from advisor.memory import gathered_bytes, transient_bytes

    # Each group at its own largest moment, as the trace reports it (the breakdown above is the peak moment's
    # make-up: there the activations may be one layer's, at the end of backward)
    analytic = {"model_states": mem.weights + mem.gradients + mem.optimizer, "transient": transient_bytes(model, cfg),
                "gathered": gathered_bytes(model, cfg), "peak": mem.total - mem.overhead}
    out: dict = {"analytic_gib": {k: round(v / GIB, 3) for k, v in analytic.items()}}
    if cfg.strategy in memtrace.STATE_ONLY_STRATEGIES and cfg.trainable == "full":
        shard = memtrace.model_state_shard_bytes(model, strategy=cfg.strategy, world_size=cfg.num_gpus, precision=cfg.precision)
        out["traced_gib"] = {"model_states": round((shard["weights"] + shard["gradients"] + shard["optimizer"]) / GIB, 3)}
        out["not_traced"] = [f"{cfg.strategy}: DeepSpeed is not traced; the model-state shard per rank is counted from the "
                             "built model's parameters; activations, logits and gathered parameters are not traced",
                             memtrace.NOT_TRACED]
        return out
    traced = memtrace.LORA_TRACED_STRATEGIES if cfg.trainable == "lora" else memtrace.TRACED_STRATEGIES
    if cfg.strategy not in traced:
        what = "LoRA: single, ddp" if cfg.trainable == "lora" else "single, ddp, fsdp; zero*: model states"
        raise UserError(f"--trace: strategy '{cfg.strategy}' is not traced (traced: {what})")
    try:
        if cfg.trainable == "lora":  # the adapter the plans attach (advisor/lora_plan.py), through peft
            from advisor.architecture import param_count
            from advisor.lora_plan import ALPHA_PER_RANK, TARGET_MODULES, lora_dropout

            r = memtrace.trace_lora(model, rank=cfg.lora_rank, alpha=ALPHA_PER_RANK * cfg.lora_rank,
                                    dropout=lora_dropout(param_count(model)), dora=True,
                                    target_modules=list(TARGET_MODULES.get(model.family, [])) or "all-linear",
                                    seq_len=cfg.seq_len, micro_batch_size=cfg.micro_batch_size,
                                    activation_checkpointing=cfg.activation_checkpointing, grad_accum=cfg.grad_accum,
                                    strategy=cfg.strategy)
        else:
            r = memtrace.trace(model, precision=cfg.precision, strategy=cfg.strategy, world_size=cfg.num_gpus,
                               seq_len=cfg.seq_len, micro_batch_size=cfg.micro_batch_size,
                               activation_checkpointing=cfg.activation_checkpointing, grad_accum=cfg.grad_accum)
    except (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError) as exc:  # a model the fake-tensor
        # run cannot take, or a config transformers refuses (memtrace.hf_config: one line; torch asserts, e.g. pad id)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"--trace: {model.name} could not be traced with {cfg.precision} / {cfg.strategy}: {first}") from None
    out["traced_gib"] = {"model_states": round(r.model_states_max / GIB, 3), "transient": round(r.transient_max / GIB, 3),
                         "gathered": round(r.gathered_max / GIB, 3), "peak": round(r.peak / GIB, 3)}
    out["peak_phase"] = r.peak_phase
    out["peak_by_category_gib"] = {k: round(v / GIB, 3) for k, v in sorted(r.peak_by_category.items())}
    out["traced_layers"] = list(r.traced_layers)
    out["extrapolated"] = r.extrapolated
    out["attention"] = r.attention
    out["not_traced"] = r.notes
    return out


def _print_trace(t: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="traced on fake tensors vs analytic (GiB per rank)")
    for col in ("group", "analytic", "traced", "error"):
        table.add_column(col, justify="left" if col == "group" else "right")
    names = {"model_states": "model states", "transient": "activations + logits + loss", "gathered": "gathered layer",
             "peak": "peak (one moment)"}
    for key, label in names.items():
        if key not in t["traced_gib"]:
            continue
        a, m = t["analytic_gib"].get(key, 0.0), t["traced_gib"][key]
        err = f"{(a - m) / m:+.0%}" if m else "-"
        table.add_row(label, f"{a:.2f}", f"{m:.2f}", err)
    console.print(table)
    if t.get("peak_by_category_gib"):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in t["peak_by_category_gib"].items())
        console.print(f"traced peak at the {t['peak_phase']}: {parts}")
    if "traced_layers" in t:
        how = (f"layers {' and '.join(map(str, t['traced_layers']))} traced, extrapolated per layer"
               if t["extrapolated"] else "full depth traced")
        console.print(f"{how}; attention: {t['attention']}")
    for note in t["not_traced"]:
        console.print(f"not traced: {note}")


def _print_table(d: dict, model) -> None:
    from rich.console import Console
    from rich.table import Table

    from advisor.architecture import describe

    console = Console()
    console.print(f"[bold]{describe(model)}[/] on {d['num_gpus']} x {d['gpu']} ({d['num_nodes']} node(s)), {d['strategy']}")
    table = Table(title="memory per GPU (GiB)", show_header=True)
    table.add_column("component")
    table.add_column("GiB", justify="right")
    sources = d.get("memory_sources") or {}
    table.add_column("figure (data/memory_overheads.yaml)")
    for k, v in d["memory_breakdown_gib"].items():
        src = sources.get(k, "")
        table.add_row(k.replace("_", " "), f"{v:.2f}", src.split(" (", 1)[0] + (": " + src.split("): ", 1)[1] if "): " in src else ""))
    table.add_row("[bold]total[/]", f"[bold]{d['memory_per_gpu_gib']:.2f}[/]", "")
    table.add_row("GPU capacity", f"{d['hbm_gib']:.1f}", "")
    console.print(table)
    if sources.get("assumed"):
        console.print(f"overhead figures assumed: {sources['assumed']}")
    lv = d.get("memory_levels_gib")
    if lv and "host_runtime" in d["memory_breakdown_gib"]:  # the cpu tier: a run measures its process RSS
        console.print(f"to compare with a run: {lv['device']:.1f} GiB process RSS (ru_maxrss; "
                      f"{lv['allocated']:.1f} GiB of it tensors)")
    elif lv:
        console.print(f"to compare with a run: {lv['allocated']:.1f} GiB torch.cuda.max_memory_allocated, "
                      f"{lv['reserved']:.1f} GiB max_memory_reserved, {lv['device']:.1f} GiB on the device (nvidia-smi)")
    spare = f"{d['headroom_gib']:.1f} GiB / {d['headroom_fraction']:.0%} to spare"
    margin = f"{d['memory_headroom']:.0%} headroom required, {d['usable_gib']:.1f} GiB usable"
    if d["fits"]:
        console.print(f"[green]fits[/] with {spare} ({margin})")
    elif d["tight"]:
        console.print(f"[yellow]tight[/]: {d['memory_per_gpu_gib']:.1f} of {d['hbm_gib']:.1f} GiB leaves {spare}, "
                      f"inside the margin ({margin}); a plan does not recommend it")
    else:
        why = "; ".join(d["notes"]) or f"over by {-d['headroom_gib']:.1f} GiB"
        console.print(f"[red]does not fit[/]: {why}" if d["headroom_gib"] >= 0 else f"[red]does not fit[/]: over by {-d['headroom_gib']:.1f} GiB")
    if d["cpu_memory_per_node_gib"]:
        console.print(f"host RAM for offload: {d['cpu_memory_per_node_gib']:.0f} of {d['host_ram_gib_per_node']:.0f} GiB per node")
    console.print(
        f"{d['tokens_per_s_per_gpu']:,.0f} tokens/s per GPU, MFU {d['mfu']:.1%}, step {d['step_time_s']:.2f} s "
        f"(bound by {d['bottleneck']})"
    )
    if d.get("calibration"):
        console.print(f"{d['calibration']}; raw estimate {d['raw_memory_per_gpu_gib']:.2f} GiB, "
                      f"{d['raw_tokens_per_s_per_gpu']:,.0f} tokens/s per GPU")
    for note in d["notes"]:
        console.print(f"note: {note}")
