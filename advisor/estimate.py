"""One estimate: memory per GPU, host memory, throughput and step time of (model, GPU tier, config)."""

from __future__ import annotations

from advisor.architecture import active_param_count, lora_trainable_params, param_count
from advisor.memory import cpu_bytes_per_node, memory_breakdown
from advisor.specs import Estimate, GpuSpec, ModelSpec, TrainConfig
from advisor.throughput import model_flops_per_token, sequence_parallel_refusal, step_time
from advisor.units import GIB, TFLOP


def estimate(model: ModelSpec, gpu: GpuSpec, cfg: TrainConfig, calibration=None) -> Estimate:
    """Pure and fast (well under 1 ms): everything the planner and `sftplan estimate` show.

    ``calibration`` (advisor.calibration.Applied, the factors of this configuration's class fitted from
    finished runs) corrects the step time (a factor, or the fixed overhead and the compute part apart) and
    scales the memory need; the raw figures stay in ``raw_*`` and the fit is judged on the calibrated need."""
    notes: list[str] = []
    if cfg.seq_len > model.max_context:
        notes.append(f"seq_len {cfg.seq_len} exceeds the model's context {model.max_context}")
    mem = memory_breakdown(model, gpu, cfg)
    raw_need = need = mem.total
    if calibration is not None and calibration.memory_factor is not None:
        need = int(raw_need * calibration.memory_factor)
    hbm = int(gpu.hbm_gib * GIB)
    usable = int(hbm * (1.0 - cfg.memory_headroom))  # the safety margin: fragmentation, spikes, estimate error
    cpu_need = cpu_bytes_per_node(model, gpu, cfg)
    cpu_fits = cpu_need <= gpu.host_ram_gib_per_node * GIB
    if not cpu_fits:
        notes.append(
            f"offload needs {cpu_need / GIB:.0f} GiB host RAM per node, the node has {gpu.host_ram_gib_per_node:.0f} GiB"
        )
    if cfg.num_gpus > gpu.max_gpus:
        notes.append(f"{gpu.id} scales to {gpu.max_gpus} GPUs in this catalog")
    if cfg.num_gpus > gpu.gpus_per_node and gpu.inter_node_bandwidth_gbit_per_s == 0:
        notes.append(f"{gpu.id} has no multi-node fabric in this catalog")
    if cfg.strategy == "megatron" and not gpu.megatron_supported:
        notes.append(f"Megatron-LM does not run on {gpu.id}")
    if cfg.strategy == "fsdp-tp":  # transformers' tp_plan splits attention heads and keeps TP inside a node
        if model.num_kv_heads % cfg.tp or model.num_heads % cfg.tp:
            notes.append(f"tp {cfg.tp} does not divide the model's {model.num_heads} attention / "
                         f"{model.num_kv_heads} key-value heads")
        if cfg.tp > gpu.gpus_per_node:
            notes.append(f"tp {cfg.tp} exceeds the {gpu.gpus_per_node} GPUs of a {gpu.id} node")

    refusal = sequence_parallel_refusal(model, gpu, cfg)
    if refusal:
        notes.append(refusal)

    st = step_time(model, gpu, cfg)
    raw_tokens_per_s = tokens_per_s_per_gpu = st.tokens_per_step / st.step_s / cfg.num_gpus
    step_s = st.step_s
    if calibration is not None:
        step_s, tokens_per_s_per_gpu = calibration.correct_throughput(st.step_s, st.fixed_s, raw_tokens_per_s, cfg.seq_len)
    flops = model_flops_per_token(model, cfg)
    mfu = flops * tokens_per_s_per_gpu / (gpu.peak_bf16_dense_tflops * TFLOP)
    runnable = not notes or all(n.startswith("offload needs") for n in notes)
    trainable = param_count(model) if cfg.trainable == "full" else lora_trainable_params(model, cfg.lora_rank)
    return Estimate(
        model_name=model.name, gpu=gpu.id, config=cfg,
        model_params=param_count(model), active_params=active_param_count(model), trainable_params=trainable,
        memory=mem, memory_per_gpu_bytes=need, hbm_bytes=hbm,
        fits=need <= usable and cpu_fits and runnable, headroom_bytes=hbm - need,
        usable_bytes=usable, tight=usable < need <= hbm,
        cpu_memory_per_node_bytes=cpu_need, cpu_fits=cpu_fits,
        flops_per_token=flops, tokens_per_s_per_gpu=tokens_per_s_per_gpu, mfu=mfu,
        step_time_s=step_s, compute_time_s=st.compute_s, comm_time_s=st.comm_s, offload_time_s=st.offload_s,
        bottleneck=st.bottleneck, notes=notes,
        raw_memory_per_gpu_bytes=raw_need, raw_tokens_per_s_per_gpu=raw_tokens_per_s,
        calibration=calibration.note if calibration is not None else "",
        raw_step_time_s=st.step_s, step_overhead_s=st.fixed_s,
    )
