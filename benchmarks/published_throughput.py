"""Estimator throughput against published training runs beyond llm-foundry (benchmarks/data/published_rows.yaml).

    .venv/bin/python benchmarks/published_throughput.py [rows.yaml] [--quiet] [--implied]

Prints one line per row (estimate, measurement, error, bottleneck, and llm-analysis at its suggested
flops_efficiency 0.5 / hbm_memory_efficiency 0.9 where that package is installed), then the median
|error| per GPU tier, per strategy, per source, per scale and overall, and the worst row. A source
marked `in_targets: false` in the data file is printed and summarised on its own line, with the reason.

How a row becomes an estimator input (stated here, not tuned per row):
- strategy: fsdp -> fsdp; single -> single; megatron -> megatron; fsdp-offload (FSDP CPUOffload with
  parameters, gradients and optimizer on the host) -> zero3-offload-all; fsdp-tp (FSDP over the data
  parallel ranks x tensor parallel inside a node) -> fsdp-tp with the row's tp: the estimator's tensor
  parallel physics and an FSDP data-parallel axis; zero2 -> zero2; zero2-offload (DeepSpeed ZeRO-2 with
  offload_optimizer, no estimator strategy) -> zero3-offload, the nearest (rows of a source out of the targets);
  zero3-offload (DeepSpeed ZeRO-3 with offload_optimizer: CPU Adam on the host) -> zero3-offload.
- expert parallel (ep, MoE rows): ParallelLayout's ep; expert tensor parallel (etp, Megatron-Core's
  --expert-tensor-parallel-size; absent: tp): ParallelLayout's etp.
- context parallel (cp): ParallelLayout's cp (ring attention; num_gpus = dp x tp x pp x cp).
- the row's layout and kernel settings become step_time's two value objects (advisor/step_options.py):
  ParallelLayout (tp_overlap, pp_interleave, cp, ep, etp, pp_layers_off_ends) and EngineKernels (the rest below).
- interleaved pipeline (the row's vp): ParallelLayout's pp_interleave (bubble / v); the row's
  pp_layers_off_ends (layers taken off the first and last stages, as Llama 3 balances its pipeline) too.
- MoE rows whose recipe runs the unfused dropless path (moe_fused: false): EngineKernels' moe_host_sync (the
  dispatcher's device-to-host sync per MoE layer forward) and eager_expert_epilogue (its TEGroupedMLP's eager
  second bias and GLU clamp, where the architecture has them: expert_bias / glu_clamp); a row's recompute_modules (Megatron-Core's
  --recompute-modules, e.g. layernorm / moe_act): EngineKernels' recompute_modules; rope_fusion: false (the
  source's rotary embedding runs eager: EngineKernels' unfused_rope); cross_entropy_fusion_impl: native / te
  (Megatron-Core's fused cross entropy kernel: EngineKernels' cross_entropy_impl); dp_overlap: last-micro-batch
  (Megatron-Core DDP's --overlap-grad-reduce / --overlap-param-gather: EngineKernels' dp_overlap_window).
- TP communication: plain TP (torchtitan vanilla TP) is exposed; async TP and Megatron-Core's
  TP-comm overlap hide part of it (ParallelLayout.tp_overlap: advisor.throughput DEFAULT_TP_OVERLAP, async TP rows 0.5 in row_inputs);
  a Megatron-Core row whose config sets no --tp-comm-overlap says tp_comm_overlap: false (exposed, 0.0).
- selective activation checkpointing (torchtitan op / layer SAC recomputes about half of a full
  recompute): the mean of the step times with and without full checkpointing.
- a source's gpu_overrides (torchtitan's 2.4 TB/s HBM2e H100) replace the tier's values for its rows.
- omitted settings: grad_accum = global batch / (data parallel x micro batch) when the row gives a
  global batch, else 1; micro_batch_size 1 when the row gives none (Megatron-style runs); activation
  checkpointing off for Megatron-Core and NeMo AutoModel rows (their default), else on; LoRA rank 16;
  precision bf16-mixed, except single-GPU full fine-tuning of universal-llm-trainer (torch AdamW on a
  bf16 model: bf16-pure) or the row's `precision`. The network per node is the catalog tier's unless the source states it.
- measured tokens/s per GPU: the row's figure; else aggregate tokens/s / GPUs; else tokens per
  micro-batch / s_per_step; else model TFLOP/s per GPU / the estimator's model FLOPs per token.
- host optimizer of offload rows: fsdp-offload (FSDP's CPU offload) steps with torch's AdamW on the host
  (EngineKernels' host_optimizer "torch-fused"); DeepSpeed rows (zero2-offload, zero3-offload) run DeepSpeed's host path.
- attention kernel: Megatron-Core sources (TE_ATTENTION_SOURCES) and rows with `attention: te` run Transformer
  Engine's fused attention (EngineKernels' attention_kernel "te-fused"); the rest FlashAttention ("flash").
- moe_dispatcher: deepep (DeepEP: one copy of a token per destination rank): EngineKernels' moe_dispatcher "deepep";
  alltoall or absent: "alltoall".
- routing: dropless (learned routing, no forced balancing): EngineKernels' moe_routing_imbalance at
  dropless_routing_imbalance(), the median over the file's forced / dropless pairs (forced_pair) of the busiest
  EP rank's load that reproduces each pair's measured ratio; printed at the end.
- source_flops_per_token: the source's own FLOPs count per token (its TFLOP/s figure's denominator), where a row's
  throughput is given only as the source's TFLOP/s.
- torch.compile is not modelled: compiled and eager rows of one source bracket the estimate.

--implied prints, per row, the catalog `mfu` (the tier's MFU at the reference shape, advisor/throughput.py
REF_MODEL / REF_CONFIG) at which this estimator reproduces the row's measured tokens/s: the estimator's
own model run backwards (implied_reference_mfu), and per tier the median over sources of each source's
median, over the dense rows in the targets (MoE rows carry their routing misses and are printed apart).
That is how data/hardware_catalog.yaml derives a tier's `mfu` from published rows (its mfu_source).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from advisor.architecture import resolve_model  # noqa: E402
from advisor.catalog import load_catalog  # noqa: E402
from advisor.specs import ModelSpec, TrainConfig  # noqa: E402
from advisor.step_options import EngineKernels, ParallelLayout  # noqa: E402
from advisor.throughput import model_flops_per_token, step_time  # noqa: E402

ROWS = REPO / "benchmarks" / "data" / "published_rows.yaml"
STRATEGY = {"fsdp": "fsdp", "single": "single", "megatron": "megatron", "fsdp-offload": "zero3-offload-all",
            "fsdp-tp": "fsdp-tp", "zero2": "zero2", "zero2-offload": "zero3-offload", "zero3-offload": "zero3-offload"}
AC_OFF_BY_DEFAULT = {"megatron-bridge", "nemo-automodel", "nemo-automodel-2601", "llama3-paper", "megascale",
                     "nemo-perf-b200", "megatron-lm-moe-readme", "megatron-moe-modelzoo", "nemo-automodel-moe"}
# sources on Megatron-Core's Transformer Engine layer spec: TE's fused attention (EngineKernels' attention_kernel
# "te-fused"); other rows say so with `attention: te` (their recipe's attention backend)
TE_ATTENTION_SOURCES = {"megatron-bridge", "megatron-moe-modelzoo", "megatron-moe-modelzoo-dropless",
                        "megatron-lm-moe-readme", "nemo-perf-b200", "nemo-automodel-2601"}
NETWORK_GBIT_PER_NODE: dict[str, float] = {}  # no source states a node's whole network (MegaScale: 200G per NIC, NICs per node not given)


class Skip(Exception):
    pass


def model_for(name: str, archs: dict) -> ModelSpec:
    if name in archs:
        a = dict(archs[name])
        return ModelSpec(name=name, source="config.json", **a)
    return resolve_model(name)


def row_inputs(row: dict, archs: dict, sources: dict | None = None, routing_imbalance: float | None = None):
    """(model, gpu spec, TrainConfig, selective AC?, step_time's options {"layout": ParallelLayout,
    "kernels": EngineKernels}, assumptions list). A `routing: dropless` row's busiest expert-parallel rank carries
    routing_imbalance x the balanced share (None: dropless_routing_imbalance(), derived from the file's pairs)."""
    sources = sources or {}
    assumed: list[str] = []
    catalog = load_catalog()
    gpu = catalog.gpu(row["gpu"])
    overrides = dict(sources.get(row["source"], {}).get("gpu_overrides") or {})
    if overrides:
        gpu = dataclasses.replace(gpu, **overrides)
    net = NETWORK_GBIT_PER_NODE.get(row["source"])
    if net:
        gpu = dataclasses.replace(gpu, inter_node_bandwidth_gbit_per_s=net)
    model = model_for(row["model"], archs)
    tp, pp = row.get("tp", 1), row.get("pp", 1)
    dp = row["num_gpus"] // (tp * pp * row.get("cp", 1))
    seq = row.get("seq_len")
    if seq is None:
        raise Skip("sequence length not given")
    mb = row.get("micro_batch_size")
    if mb is None:
        mb = 1
        assumed.append("micro_batch 1")
    gbs = row.get("global_batch_size")
    if gbs is None and row.get("tokens_per_step"):
        gbs = round(row["tokens_per_step"] / seq)
    ga = row.get("grad_accum")
    if ga is None:
        ga = max(1, round(gbs / (dp * mb))) if gbs else 1
        assumed.append(f"grad_accum {ga}" + (" (from the global batch)" if gbs else ""))
    ac_raw = row.get("activation_checkpointing")
    if ac_raw is None:
        ac_raw = row["source"] not in AC_OFF_BY_DEFAULT
        assumed.append(f"AC {'on' if ac_raw else 'off'}")
    selective = isinstance(ac_raw, str)
    trainable = row.get("trainable", "full")
    precision = row.get("precision", "bf16-mixed")
    if row["source"] == "universal-llm-trainer" and row["strategy"] == "single" and trainable == "full":
        precision = "bf16-pure"
    cfg = TrainConfig(num_gpus=row["num_gpus"], strategy=STRATEGY[row["strategy"]], precision=precision,
                      seq_len=seq, micro_batch_size=mb, grad_accum=ga,
                      activation_checkpointing=bool(ac_raw) and not selective, tp=tp, pp=pp, trainable=trainable,
                      lora_rank=row.get("lora_rank", 16))
    tp_overlap = None
    if row["strategy"] == "fsdp-tp" or row["source"].startswith("nemo-automodel"):
        tp_overlap = 0.5 if row.get("async_tp") else 0.0  # PyTorch TP: exposed; async TP: about half hidden
    if row.get("tp_comm_overlap") is False:  # Megatron-Core without --tp-comm-overlap: TP collectives exposed
        tp_overlap = 0.0
    layout = ParallelLayout(
        tp_overlap=tp_overlap,
        cp=row["cp"] if row.get("cp", 1) > 1 else 1,
        ep=row["ep"] if row.get("ep", 1) > 1 else 1,
        etp=row.get("etp"),  # Megatron-Core --expert-tensor-parallel-size (None: tp)
        pp_interleave=row["vp"] if row.get("vp", 1) > 1 else 1,
        ep_overlap=float(row.get("ep_overlap", 0.0)),  # Megatron-Core --overlap-moe-expert-parallel-comm
        pp_layers_off_ends=row.get("pp_layers_off_ends") or 0)  # layers off the first and last stages
    kernels = EngineKernels(
        moe_host_sync=row.get("moe_fused") is False,  # the source runs Megatron-Core's unfused dropless MoE path
        eager_expert_epilogue=row.get("moe_fused") is False,  # ... whose TEGroupedMLP adds fc2's bias, clamps eagerly
        recompute_modules=tuple(row.get("recompute_modules") or ()),  # Megatron-Core's selective recompute
        # FSDP CPU offload steps the optimizer with torch on the host
        host_optimizer="torch-fused" if row["strategy"] == "fsdp-offload" else "deepspeed",
        unfused_rope=row.get("rope_fusion") is False,  # the source's rotary embedding runs as eager PyTorch ops
        cross_entropy_impl=row.get("cross_entropy_fusion_impl") or None,  # Megatron-Core's fused CE kernel
        dp_overlap_window=row.get("dp_overlap") == "last-micro-batch",  # DDP's sync hides behind one micro-batch
        grad_reduce_bytes=4 if row.get("grad_reduce") == "fp32" else 2,  # the source reduces its gradients in fp32
        attention_kernel="te-fused" if row["source"] in TE_ATTENTION_SOURCES or row.get("attention") == "te" else "flash",
        moe_dispatcher="deepep" if row.get("moe_dispatcher") == "deepep" else "alltoall",  # DeepEP: a copy per rank
        moe_routing_imbalance=1.0 if row.get("routing") != "dropless" else (
            routing_imbalance if routing_imbalance is not None else dropless_routing_imbalance()))
    extra = {"layout": layout, "kernels": kernels}
    return model, gpu, cfg, selective, extra, assumed


def estimate_tokens_per_s(model, gpu, cfg, selective: bool, extra: dict) -> tuple[float, str]:
    kw = dict(extra)
    try:
        st = step_time(model, gpu, cfg, **kw)
    except TypeError:  # an estimator without layout= / kernels= (a baseline from before them: no options at all)
        kw = {}
        st = step_time(model, gpu, cfg)
    step_s = st.step_s
    if selective:
        on = step_time(model, gpu, dataclasses.replace(cfg, activation_checkpointing=True), **kw)
        step_s = (st.step_s + on.step_s) / 2
    return st.tokens_per_step / step_s / cfg.num_gpus, st.bottleneck


def bisect_rising(f, target: float, lo: float, hi: float, iterations: int) -> float:
    """The x in [lo, hi] at which the rising function f reaches target (bisection)."""
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
    return (lo + hi) / 2


_IMBALANCE: dict[str, tuple[float, list]] = {}


def dropless_routing_imbalance(path: Path = ROWS) -> float:
    """The busiest expert-parallel rank's load over the balanced share in a dropless run, from the file's pairs
    (a `routing: dropless` row whose `forced_pair` names the same run with forced balanced routing): per pair, the
    load at which the estimator's dropless / forced ratio equals the measured one (bisection; the ratio falls with
    the load), then the median over pairs. Only the pair's ratio enters, not either row's absolute figure."""
    key = str(path)
    if key not in _IMBALANCE:
        data = yaml.safe_load(Path(path).read_text())
        archs, sources = data.get("architectures", {}), data.get("sources", {})
        by_id = {r["id"]: r for r in data["rows"]}
        per_pair = []
        for row in data["rows"]:
            if row.get("routing") != "dropless" or not row.get("forced_pair"):
                continue
            forced = by_id[row["forced_pair"]]
            model, gpu, cfg, selective, extra, _a = row_inputs(forced, archs, sources)
            est_forced = estimate_tokens_per_s(model, gpu, cfg, selective, extra)[0]
            ratio = measured_tokens_per_s(row, model, cfg) / measured_tokens_per_s(forced, model, cfg)

            def falling_ratio(load: float) -> float:  # minus the estimate's dropless / forced ratio: rises with load
                m, g, c, sel, ex, _a = row_inputs(row, archs, sources, routing_imbalance=load)
                return -estimate_tokens_per_s(m, g, c, sel, ex)[0] / est_forced

            per_pair.append((row["id"], ratio, bisect_rising(falling_ratio, -ratio, 1.0, 4.0, 40)))
        _IMBALANCE[key] = (statistics.median(p[2] for p in per_pair) if per_pair else 1.0, per_pair)
    return _IMBALANCE[key][0]


def measured_tokens_per_s(row: dict, model, cfg) -> float:
    if "tokens_per_s_per_gpu" in row:
        return float(row["tokens_per_s_per_gpu"])
    if "tokens_per_s" in row:
        return row["tokens_per_s"] / row["num_gpus"]
    if "s_per_step" in row:
        return cfg.micro_batch_size * cfg.seq_len / row["s_per_step"]
    if "source_flops_per_token" in row:  # the source's own FLOPs count (its TFLOP/s figure's denominator)
        return row["model_tflops_per_gpu_source"] * 1e12 / row["source_flops_per_token"]
    if "model_tflops_per_gpu" in row:
        return row["model_tflops_per_gpu"] * 1e12 / model_flops_per_token(model, cfg)
    raise Skip("no throughput figure")


IMPLIED_MFU_RANGE = (0.02, 0.95)


def implied_reference_mfu(model, gpu, cfg, selective: bool, extra: dict, measured: float) -> float | None:
    """The tier `mfu` (MFU at the catalog's reference shape) at which estimate_tokens_per_s gives `measured`:
    bisection, the estimate rising with the tier's mfu. None where even the top of IMPLIED_MFU_RANGE (or the
    estimator's GEMM ceiling, MAX_GEMM_EFFICIENCY) stays below the measurement."""
    def est(mfu: float) -> float:
        return estimate_tokens_per_s(model, dataclasses.replace(gpu, mfu=mfu), cfg, selective, extra)[0]

    lo, hi = IMPLIED_MFU_RANGE
    if est(hi) < measured * (1 - 1e-3):
        return None
    return bisect_rising(est, measured, lo, hi, 30)


def implied_by_tier(path: Path = ROWS) -> dict[str, dict]:
    """Per tier: {"rows": [(row id, source, implied mfu or None, dense?)], "by_source": {source: median},
    "median_over_sources": median of the dense in-target sources' medians (None without such rows)}."""
    data = yaml.safe_load(Path(path).read_text())
    archs, sources = data.get("architectures", {}), data.get("sources", {})
    out: dict[str, dict] = {}
    for row in data["rows"]:
        try:
            model, gpu, cfg, selective, extra, _a = row_inputs(row, archs, sources, dropless_routing_imbalance(path))
            meas = measured_tokens_per_s(row, model, cfg)
        except Skip:
            continue
        implied = implied_reference_mfu(model, gpu, cfg, selective, extra, meas)
        dense = model.num_experts <= 1 and sources.get(row["source"], {}).get("in_targets", True)
        tier = out.setdefault(row["gpu"], {"rows": [], "by_source": {}, "median_over_sources": None})
        tier["rows"].append((row["id"], row["source"], implied, dense))
    for tier in out.values():
        per_source: dict[str, list[float]] = {}
        for _id, source, implied, dense in tier["rows"]:
            if dense and implied is not None:
                per_source.setdefault(source, []).append(implied)
        tier["by_source"] = {src: statistics.median(v) for src, v in per_source.items()}
        if tier["by_source"]:
            tier["median_over_sources"] = statistics.median(tier["by_source"].values())
    return out


def print_implied(path: Path) -> None:
    catalog = load_catalog()
    sources = yaml.safe_load(Path(path).read_text()).get("sources", {})
    by_tier = implied_by_tier(path)
    for tier_id, tier in sorted(by_tier.items()):
        print(f"\n{tier_id}: catalog mfu {catalog.gpu(tier_id).mfu:.3f}")
        for row_id, source, implied, dense in tier["rows"]:
            txt = f"{implied:.3f}" if implied is not None else "above the GEMM ceiling"
            note = ""
            if not dense:
                src = sources.get(source, {})
                note = ("  (not in the derivation: out of the targets)" if not src.get("in_targets", True)
                        else "  (not in the derivation: MoE)")
            print(f"  {row_id:<34} {source:<24} implied mfu {txt}{note}")
        for source, med in sorted(tier["by_source"].items()):
            print(f"  source {source:<27} median implied mfu {med:.3f}")
        if tier["median_over_sources"] is not None:
            print(f"  median over {len(tier['by_source'])} source(s): {tier['median_over_sources']:.3f}")
        else:
            print("  no dense row in the targets: the catalog value is not measured here")
    missing = [gpu_id for gpu_id in catalog.gpus if gpu_id not in by_tier]
    print(f"\nno published row (their mfu is not measured here; see mfu_source): {', '.join(missing)}")


def llm_analysis_tokens_per_s(model: ModelSpec, gpu, cfg: TrainConfig, selective: bool):
    """llm-analysis at flops_efficiency 0.5, hbm_memory_efficiency 0.9, on the same hardware facts
    (the catalog tier's peak, HBM, NVLink and per-GPU share of the node network). Its memory check is
    switched off (the published runs fitted); it models neither LoRA nor CPU offload (reported as such)."""
    try:
        from llm_analysis.analysis import ActivationRecomputation, DSZeRO, LLMAnalysis
        from llm_analysis.config import GPUConfig, ModelConfig, ParallelismConfig, get_dtype_config_by_name
    except ImportError:
        return None
    if cfg.trainable == "lora":
        return "llm-analysis: no LoRA model"
    if "offload" in cfg.strategy:
        return "llm-analysis: no offload model"
    logging.disable(logging.CRITICAL)
    h = model.hidden_size
    ffn = max(h, round(model.ffn_size / h) * h)  # llm-analysis needs ffn a multiple of hidden
    try:
        mc = ModelConfig(name=model.name, num_layers=model.num_layers, n_head=model.num_heads, hidden_dim=h,
                         vocab_size=model.vocab_size, max_seq_len=cfg.seq_len, num_key_value_heads=model.num_kv_heads,
                         ffn_embed_dim=ffn, model_type="llama", moe_num_experts=model.num_experts,
                         moe_top_k=model.experts_per_token)
        gc = GPUConfig(name=gpu.id, mem_per_GPU_in_GB=1e4,  # the run fitted: skip its memory check
                       hbm_bandwidth_in_GB_per_sec=gpu.hbm_bandwidth_tb_per_s * 1000,
                       intra_node_bandwidth_in_GB_per_sec=gpu.intra_node_bandwidth_gb_per_s, intra_node_min_message_latency=8e-6,
                       peak_fp16_TFLOPS=gpu.peak_bf16_dense_tflops, peak_i8_TFLOPS=2 * gpu.peak_bf16_dense_tflops,
                       peak_i4_TFLOPS=4 * gpu.peak_bf16_dense_tflops,
                       inter_node_bandwidth_in_GB_per_sec=max(1.0, gpu.inter_node_bandwidth_gbit_per_s / 8 / gpu.gpus_per_node))
        dp = cfg.num_gpus // (cfg.tp * cfg.pp)
        la = LLMAnalysis(mc, gc, get_dtype_config_by_name("w16a16e16"),
                         ParallelismConfig(tp_size=cfg.tp, pp_size=cfg.pp, dp_size=dp),
                         flops_efficiency=0.5, hbm_memory_efficiency=0.9)
        recompute = (ActivationRecomputation.SELECTIVE if selective else
                     ActivationRecomputation.FULL if cfg.activation_checkpointing else ActivationRecomputation.NONE)
        zero = {"fsdp": DSZeRO.STAGE_3, "zero3": DSZeRO.STAGE_3, "zero3-offload": DSZeRO.STAGE_3,
                "zero3-offload-all": DSZeRO.STAGE_3, "zero2": DSZeRO.STAGE_2, "megatron": DSZeRO.STAGE_1}.get(cfg.strategy, DSZeRO.NONE)
        out = la.training(batch_size_per_gpu=cfg.micro_batch_size, gradient_accumulation_steps=cfg.grad_accum,
                          seq_len=cfg.seq_len, activation_recomputation=recompute, ds_zero=zero,
                          mlp_gated_linear_units=model.ffn_kind == "gated")
        return cfg.micro_batch_size * cfg.seq_len * cfg.grad_accum / out["latency_per_iter"] / (cfg.tp * cfg.pp)
    except Exception as exc:  # noqa: BLE001 - a row llm-analysis cannot take is reported, not fatal
        return f"llm-analysis failed: {type(exc).__name__}: {str(exc)[:80]}"


def compare(path: Path = ROWS):
    """Per row: (row, est tokens/s, measured tokens/s, error, bottleneck, llm-analysis tokens/s or note, assumed).
    Skipped rows come back with est None and the reason in bottleneck."""
    data = yaml.safe_load(Path(path).read_text())
    archs = data.get("architectures", {})
    sources = data.get("sources", {})
    out = []
    for row in data["rows"]:
        try:
            model, gpu, cfg, selective, extra, assumed = row_inputs(row, archs, sources, dropless_routing_imbalance(path))
            meas = measured_tokens_per_s(row, model, cfg)
        except Skip as why:
            out.append((row, None, None, None, str(why), None, []))
            continue
        est, bottleneck = estimate_tokens_per_s(model, gpu, cfg, selective, extra)
        la = llm_analysis_tokens_per_s(model, gpu, cfg, selective)
        out.append((row, est, meas, est / meas - 1, bottleneck, la, assumed))
    return out


def group_of(row: dict) -> dict[str, str]:
    strategy = row["strategy"]
    if row.get("trainable") == "lora":
        strategy += "/lora"
    nodes = "multi-node" if row["num_gpus"] > 8 else "one node"
    return {"tier": row["gpu"], "strategy": strategy, "source": row["source"], "scale": nodes}


def summarize(results, sources: dict) -> dict:
    """Medians over the rows in the targets; rows of a source marked in_targets: false form their own group."""
    groups: dict[tuple[str, str], list[float]] = {}
    la_groups: dict[tuple[str, str], list[float]] = {}
    for row, est, meas, err, _b, la, _a in results:
        if est is None:
            continue
        if not sources.get(row["source"], {}).get("in_targets", True):
            groups.setdefault(("excluded", row["source"]), []).append(err)
            continue
        for kind, name in list(group_of(row).items()) + [("all", "all")]:
            groups.setdefault((kind, name), []).append(err)
            if isinstance(la, float):
                la_groups.setdefault((kind, name), []).append(la / meas - 1)
    return {"ours": groups, "llm_analysis": la_groups}


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    quiet = "--quiet" in argv
    path = Path(args[0]) if args else ROWS
    results = compare(path)
    sources = yaml.safe_load(path.read_text()).get("sources", {})
    for row, est, meas, err, bottleneck, la, assumed in results:
        if quiet:
            continue
        if est is None:
            print(f"{row['id']:<34} skipped: {bottleneck}")
            continue
        la_txt = (f"llm-analysis {la:>8,.0f} ({la / meas - 1:+6.1%})" if isinstance(la, float)
                  else (la or "llm-analysis not installed"))
        extra = f"  assumed: {', '.join(assumed)}" if assumed else ""
        print(f"{row['id']:<34} est {est:>8,.0f}  measured {meas:>8,.0f}  error {err:+6.1%}  ({bottleneck})  {la_txt}{extra}")
    s = summarize(results, sources)
    print()
    for kind in ("tier", "strategy", "source", "scale", "all", "excluded"):
        for (k, name), errs in sorted(s["ours"].items()):
            if k != kind:
                continue
            la = s["llm_analysis"].get((k, name))
            la_txt = f"; llm-analysis {statistics.median(abs(e) for e in la):.1%}" if la else ""
            print(f"{kind:>8} {name:<28} median |error| {statistics.median(abs(e) for e in errs):5.1%} over {len(errs):>2} rows, "
                  f"mean {statistics.mean(errs):+6.1%}, worst {max(abs(e) for e in errs):5.1%}{la_txt}")
    done = [(abs(err), row["id"]) for row, est, _m, err, *_ in results
            if est is not None and sources.get(row["source"], {}).get("in_targets", True)]
    worst = max(done)
    print(f"in the targets: worst row {worst[1]} {worst[0]:.1%}; {sum(e <= 0.10 for e, _ in done)}/{len(done)} within 10%; "
          f"{sum(e > 0.35 for e, _ in done)} beyond 35%; {sum(est is None for _r, est, *_ in results)} rows skipped")
    for name, src in sources.items():
        if not src.get("in_targets", True):
            print(f"not in the targets: {name}: {' '.join(str(src.get('why_not_in_targets', '')).split())}")
    load, pairs = _IMBALANCE.get(str(path), (None, []))
    for row_id, ratio, implied in pairs:
        print(f"dropless routing: {row_id} measures {ratio:.3f} of its forced-balance pair: busiest rank {implied:.3f} x "
              f"the balanced load")
    if load is not None:
        print(f"dropless routing imbalance (median over {len(pairs)} pairs, used for every routing: dropless row): {load:.3f}")
    if "--implied" in argv:
        print_implied(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
