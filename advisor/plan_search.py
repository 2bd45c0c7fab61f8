"""The planner's search over one GPU tier: GPU counts x strategies x micro-batch x activation checkpointing.

Pruning (so the whole plan stays well under 50 ms):
- strategies come from the parallelism rule (single/DDP if one GPU holds the model, else FSDP;
  ZeRO-3 offload only when nothing fits sharded on the tier; Megatron only when asked for);
- memory per GPU does not grow with the GPU count, so the smallest count that fits is found by
  bisection at the smallest footprint (micro-batch 1, checkpointing on);
- micro-batch and checkpointing are chosen once, at that count, and reused for larger counts;
- every estimate is cached by its configuration, across plans too: a TUI edit of the data size,
  budget or deadline re-plans from cached estimates (estimates are pure; they are never mutated).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from advisor.architecture import arch_key, param_count
from advisor.cost import cost_usd, overhead_hours
from advisor.errors import UserError
from advisor.estimate import estimate
from advisor.memory import ulysses_degree
from advisor.models import PlanRequest, Recommended
from advisor.run_limits import FULL_SFT_ONLY, full_sft_only_reason
from advisor.specs import Estimate, GpuSpec, TrainConfig, tp_splits_heads
from advisor.units import GIB, SECONDS_PER_HOUR

MICRO_BATCHES = (1, 2, 4, 8, 16)
# layouts calibrated by their base strategy's runs while they have none of their own (a tuple: no module-level dict)
LAYOUT_BASE = (("hsdp", "fsdp"), ("fsdp-tp", "fsdp"), ("zero3-sp", "zero3"))
SHARDED_MULTI = ("ddp", "fsdp", "hsdp", "zero2", "zero3", "zero3-sp")  # need at least 2 GPUs unless the count is pinned


@dataclass(frozen=True)
class Cand:
    gpu: GpuSpec
    num_gpus: int
    strategy: str
    micro_batch_size: int
    grad_accum: int
    activation_checkpointing: bool
    tp: int
    pp: int
    seq_len: int
    est: Estimate
    hours: float  # training plus overhead_hours
    cost_usd: float
    overhead_hours: float = 0.0  # start-up, weight load, checkpoint writes (advisor.cost.overhead_hours)

    @property
    def num_nodes(self) -> int:
        return nodes_for(self.num_gpus, self.gpu)

    @property
    def dp(self) -> int:
        """Data-parallel replicas; zero3-sp: one per node (each node's GPUs share every sequence)."""
        if self.strategy == "zero3-sp":
            return max(1, self.num_gpus // ulysses_degree(self.strategy, self.num_gpus, self.gpu.gpus_per_node))
        return max(1, self.num_gpus // (self.tp * self.pp))

    def key(self) -> tuple:
        return (self.gpu.id, self.num_gpus, self.strategy, self.micro_batch_size, self.activation_checkpointing,
                self.tp, self.pp)


def memory_binding(e: Estimate, gpu: GpuSpec) -> str:
    """'GPU memory 75.1/71.6 GiB usable at 10% headroom (tight: 4.5 GiB / 6% to spare of 79.6 GiB)': the limit, with the margin."""
    need, usable = e.memory_per_gpu_bytes / GIB, e.usable_bytes / GIB
    out = f"GPU memory {need:,.1f}/{usable:,.1f} GiB usable at {e.config.memory_headroom:.0%} headroom"
    if e.tight:
        out += f" (tight: {e.headroom_bytes / GIB:,.1f} GiB / {e.headroom_bytes / e.hbm_bytes:.0%} to spare of {gpu.hbm_gib:g} GiB)"
    return out


@dataclass(frozen=True)
class Miss:
    """Why nothing fits on a tier: the long reason, a short one, and the estimate that failed (if any)."""

    why_not: str
    binding_constraint: str
    est: Estimate | None = None


def nodes_for(num_gpus: int, gpu: GpuSpec) -> int:
    return max(1, math.ceil(num_gpus / gpu.gpus_per_node))


def rec_of(c: Cand, precision: str) -> Recommended:
    return Recommended(gpu=c.gpu.id, num_gpus=c.num_gpus, num_nodes=c.num_nodes, strategy=c.strategy,
                       micro_batch_size=c.micro_batch_size, grad_accum=c.grad_accum, activation_checkpointing=c.activation_checkpointing, tp=c.tp, pp=c.pp,
                       precision=precision)


class EstimateCache:
    """Estimates kept across plans, keyed by everything they depend on: the architecture, the GPU tier's
    values (not its identity: an edited catalog entry is a different key) and the configuration.

    The caller owns it and passes it to ``planner.plan``: the TUI keeps one per session, so a keystroke
    re-plans from cached estimates (estimates are pure; they are never mutated). A plan given none
    searches cold. benchmarks/latency.py measures both (re-plan after an edit, target < 50 ms).
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._estimates: dict[tuple, Estimate | None] = {}

    def __len__(self) -> int:
        return len(self._estimates)

    def get(self, key: tuple) -> tuple[bool, Estimate | None]:
        """(found, estimate); a cached None is an invalid configuration."""
        if key in self._estimates:
            return True, self._estimates[key]
        return False, None

    def put(self, key: tuple, e: Estimate | None) -> None:
        if len(self._estimates) >= self.max_entries:
            self._estimates.clear()
        self._estimates[key] = e

    def clear(self) -> None:
        self._estimates.clear()


def _gpu_key(gpu: GpuSpec) -> tuple:
    """The tier's values, as a cache key."""
    return tuple(getattr(gpu, f.name) for f in fields(gpu))


def _ok(e: Estimate | None) -> bool:
    return e is not None and e.fits and e.cpu_fits and e.tokens_per_s_per_gpu > 0


class Search:
    def __init__(self, model, req: PlanRequest, seq_len: int, tokens_total: int, gbs_target: int,
                 trainable: str, megatron: bool, epochs: int = 1, shared: EstimateCache | None = None):
        self.model, self.req, self.seq_len = model, req, seq_len
        self.tokens_total, self.gbs_target = tokens_total, gbs_target
        self.trainable, self.megatron = trainable, megatron
        self.cache: dict[tuple, Estimate | None] = {}  # this search's own estimates
        self.shared = shared if shared is not None else EstimateCache()  # the caller's, across plans
        self._gpu_keys: dict[str, tuple] = {}
        self.misses: dict[str, Miss] = {}  # GPU id -> why nothing fits there
        self.sp_refused_for_packing: list[str] = []  # tiers where only a sequence did not fit, and packing was asked
        self.epochs = epochs
        self._overhead: dict[tuple[int, str, float | None], float] = {}  # (nodes, strategy, tier start-up) -> hours
        self.arch = (model.name, *arch_key(model), model.max_context)

    calibration = None  # advisor.calibration.Calibration: factors fitted from finished runs, or None

    def factors(self, gpu: GpuSpec, strategy: str):
        """The calibration's factors for this configuration's class (advisor.calibration.applied), or None."""
        if self.calibration is None:
            return None
        from advisor.calibration import applied, class_key

        def factors_of(s: str):
            return applied(self.calibration, class_key(gpu.id, s, self.req.precision, self.trainable,
                                                       param_count(self.model)))

        found = self._with_dataset(factors_of(strategy))
        base = next((b for layout, b in LAYOUT_BASE if layout == strategy), None)
        if base and found is not None and found.throughput_factor is None and found.memory_factor is None:
            # hsdp / fsdp-tp run FSDP2 on the same stack (Trainer, accelerate, transformers) over a 2-D mesh, zero3-sp
            # DeepSpeed's ZeRO-3 with Ulysses beside it: with no run of their own, their base strategy's measured
            # factors describe this cluster and stack better than none (an uncalibrated layout must not win over a
            # calibrated, slower-measured base on that alone)
            measured = factors_of(base)
            if measured is not None and (measured.throughput_factor is not None or measured.memory_factor is not None):
                return self._with_dataset(measured)
        return found

    def _with_dataset(self, got):
        """The factors, told what a sequence of this plan holds (their tokens per step depend on it)."""
        if got is None:
            return None
        return replace(got, text_tokens_per_sequence=float(min(self.req.dataset.avg_tokens, self.seq_len)),
                       packed=bool(self.req.packing))

    # ------------------------------------------------------------------ one estimate
    def _ga(self, n: int, mb: int, tp: int, pp: int, sp: int = 1) -> int:
        dp = max(1, n // (tp * pp * sp))
        return max(1, math.ceil(self.gbs_target / (mb * dp)))

    def est(self, gpu: GpuSpec, n: int, s: str, mb: int, ac: bool, tp: int = 1, pp: int = 1) -> Estimate | None:
        ga = self._ga(n, mb, tp, pp, ulysses_degree(s, n, gpu.gpus_per_node))
        key = (gpu.id, n, s, mb, ac, tp, pp, ga)
        if key in self.cache:
            return self.cache[key]
        gpu_key = self._gpu_keys.get(gpu.id)
        if gpu_key is None:
            gpu_key = self._gpu_keys[gpu.id] = _gpu_key(gpu)
        shared_key = (self.arch, gpu_key, n, s, mb, ac, tp, pp, ga, self.req.precision, self.seq_len, self.trainable,
                      # a calibration's tokens per step depend on what the plan's sequences hold
                      (self.calibration.sha256, self.req.dataset.avg_tokens, self.req.packing) if self.calibration else None,
                      self.req.memory_headroom)
        found, e = self.shared.get(shared_key)
        if not found:
            try:
                cfg = TrainConfig(num_gpus=n, strategy=s, precision=self.req.precision, seq_len=self.seq_len,
                                  micro_batch_size=mb, grad_accum=ga, activation_checkpointing=ac, tp=tp, pp=pp,
                                  trainable=self.trainable, lora_rank=16, memory_headroom=self.req.memory_headroom)
                e = estimate(self.model, gpu, cfg, calibration=self.factors(gpu, s))
            except (UserError, ValueError, ZeroDivisionError):  # ValueError: an invalid TrainConfig
                e = None
            self.shared.put(shared_key, e)
        self.cache[key] = e
        return e

    def cand(self, gpu: GpuSpec, n: int, s: str, mb: int, ac: bool, tp: int = 1, pp: int = 1) -> Cand | None:
        e = self.est(gpu, n, s, mb, ac, tp, pp)
        if not _ok(e):
            return None
        nodes = nodes_for(n, gpu)
        key = (nodes, s, gpu.startup_s)
        if key not in self._overhead:
            self._overhead[key] = overhead_hours(self.model, self.req.precision, self.trainable, self.epochs, nodes, s,
                                                 gpu.startup_s)
        overhead = self._overhead[key]
        hours = self.tokens_total / (e.tokens_per_s_per_gpu * n) / SECONDS_PER_HOUR + overhead
        return Cand(gpu, n, s, mb, e.config.grad_accum, ac, tp, pp, self.seq_len, e, hours,
                    cost_usd(hours, n, gpu), overhead)

    # ------------------------------------------------------------------ the tier
    def counts(self, gpu: GpuSpec) -> list[int]:
        if self.req.num_gpus:
            return [self.req.num_gpus]
        per = gpu.gpus_per_node
        cs = sorted({c for c in (1, 2, 4, 8) if c <= per} | {per})
        cs += [k * per for k in range(2, gpu.max_nodes + 1)]
        return [c for c in cs if c <= self.req.max_gpus]

    def tier(self, gpu: GpuSpec, quick: bool = False) -> list[Cand]:
        counts = self.counts(gpu)
        if not counts:
            self.misses[gpu.id] = Miss(f"max_gpus {self.req.max_gpus} allows no GPU count on this tier",
                                       f"GPU count: max_gpus {self.req.max_gpus}")
            return []
        if self.req.strategy in FULL_SFT_ONLY and self.trainable != "full":  # what the executor's preflight refuses
            s = self.req.strategy
            self.misses[gpu.id] = Miss(f"strategy {full_sft_only_reason(s)}", f"strategy {s}: full SFT only")
            return []
        if self.req.strategy:
            return self._strategy(gpu, self.req.strategy, counts, quick) or self._record(gpu, self.req.strategy, counts)
        out: list[Cand] = []
        if self.megatron and gpu.megatron_supported:
            out += self._megatron(gpu, counts, quick)
        if _ok(self.est(gpu, 1, "single", 1, True)):
            if 1 in counts:
                out += self._strategy(gpu, "single", counts, quick)
            deadline = self.req.deadline_hours
            if not quick or not any(deadline is None or c.hours <= deadline for c in out):
                out += self._strategy(gpu, "ddp", counts, quick)
            return out
        out += self._strategy(gpu, "fsdp", counts, quick)
        multi_node = [c for c in counts if c > gpu.gpus_per_node]
        layouts = self.trainable == "full"  # the executor runs hsdp / fsdp-tp for full SFT (LoRA: fsdp, zero3)
        fsdp = next((c for c in out if c.strategy == "fsdp"), None)
        # Where FSDP fits, the layouts run at FSDP's micro-batch and checkpointing (the sweep's choice): they win
        # only by being faster at the same settings, never by a choice the FSDP sweep did not revisit at that count.
        same = (fsdp.micro_batch_size, fsdp.activation_checkpointing) if fsdp else None
        # HSDP on several nodes: the all-gathers stay on NVLink (rules.rule_parallelism says when it won)
        if layouts and multi_node and gpu.inter_node_bandwidth_gbit_per_s > 0:
            out += (self._sweep(gpu, "hsdp", multi_node, *same, quick) if same
                    else self._strategy(gpu, "hsdp", multi_node, quick))
        # FSDP x TP: on several nodes it shrinks the data-parallel traffic that crosses the network (each rank
        # gathers its tp slice over num_gpus / tp ranks); where nothing fits fully sharded, it also splits
        # what FSDP cannot (the layer being gathered, the insides of a layer), before the optimizer goes to host RAM
        if layouts:
            out += self._fsdp_tp(gpu, multi_node if fsdp else counts, quick, same)
        if not any(c.strategy in ("fsdp", "fsdp-tp") for c in out):
            # ZeRO-3 + Ulysses sequence parallel only where one sequence's activations are what does not fit
            # (rules.rule_parallelism: parallel.zero3-sp): sharded states fit, a sequence's tensors do not
            if layouts and self.sequence_bound(gpu, counts):
                if self.req.packing:  # the executor refuses packed rows under Ulysses (sdpa drops the mask)
                    self.sp_refused_for_packing.append(gpu.id)
                else:
                    out += self._strategy(gpu, "zero3-sp", [n for n in counts if n % ulysses_degree("zero3-sp", n, gpu.gpus_per_node) == 0],
                                          quick)
            out += self._strategy(gpu, "zero3-offload", counts, quick)
        return out or self._record(gpu, "zero3-offload", counts)

    def sequence_bound(self, gpu: GpuSpec, counts: list[int]) -> bool:
        """At the most GPUs allowed, micro-batch 1 with checkpointing, ZeRO-3 does not fit, but would without
        one sequence's per-token tensors (activations, logits): the sequence, not the model, is too large."""
        if not counts or counts[-1] < 2:
            return False
        e = self.est(gpu, counts[-1], "zero3", 1, True)
        if e is None or _ok(e):
            return False
        per_sequence = e.memory.activations + e.memory.logits
        return e.memory_per_gpu_bytes - per_sequence <= e.usable_bytes

    def _valid(self, s: str, counts: list[int]) -> list[int]:
        if s == "single":
            return [n for n in counts if n == 1]
        if s in SHARDED_MULTI and not self.req.num_gpus:
            return [n for n in counts if n >= 2]
        return counts

    def _first_fit(self, gpu: GpuSpec, s: str, valid: list[int]) -> int | None:
        """Index of the smallest count that fits at the smallest footprint (bisection)."""
        if not valid or not _ok(self.est(gpu, valid[-1], s, 1, True)):
            return None
        lo, hi = 0, len(valid) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if _ok(self.est(gpu, valid[mid], s, 1, True)):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _pick_micro(self, gpu: GpuSpec, s: str, n: int, tp: int = 1, pp: int = 1) -> tuple[int, bool]:
        """Largest fitting micro-batch with checkpointing off and on; keep the faster (off on ties)."""
        cap = max(1, self.gbs_target // max(1, n // (tp * pp)))
        mbs = [m for m in MICRO_BATCHES if m <= cap] or [1]
        best, best_tps = (1, True), -1.0
        for ac in (False, True):
            lo, hi, found = 0, len(mbs) - 1, None
            while lo <= hi:
                mid = (lo + hi) // 2
                e = self.est(gpu, n, s, mbs[mid], ac, tp, pp)
                if _ok(e):
                    found, lo = (mbs[mid], e), mid + 1
                else:
                    hi = mid - 1
            if found and found[1].tokens_per_s_per_gpu > best_tps * (1 + 1e-9):
                best, best_tps = (found[0], ac), found[1].tokens_per_s_per_gpu
        return best

    def _sweep(self, gpu: GpuSpec, s: str, ns: list[int], mb: int, ac: bool, quick: bool, tp: int = 1, pp: int = 1) -> list[Cand]:
        out: list[Cand] = []
        for n in ns:
            cap = max(1, self.gbs_target // max(1, n // (tp * pp)))
            c = self.cand(gpu, n, s, min(mb, cap), ac, tp, pp) or self.cand(gpu, n, s, 1, True, tp, pp)
            if c is None:
                continue
            out.append(c)
            if quick and (self.req.deadline_hours is None or c.hours <= self.req.deadline_hours):
                break
        return out

    def _strategy(self, gpu: GpuSpec, s: str, counts: list[int], quick: bool) -> list[Cand]:
        if s == "megatron":
            return self._megatron(gpu, counts, quick)
        if s == "fsdp-tp":
            return self._fsdp_tp(gpu, counts, quick)
        valid = self._valid(s, counts)
        first = self._first_fit(gpu, s, valid)
        if first is None:
            return []
        mb, ac = self._pick_micro(gpu, s, valid[first])
        return self._sweep(gpu, s, valid[first:], mb, ac, quick)

    def _megatron(self, gpu: GpuSpec, counts: list[int], quick: bool) -> list[Cand]:
        out: list[Cand] = []
        choice: tuple[int, bool] | None = None
        for n in counts:
            cap = min(8, gpu.gpus_per_node, 1 << (n.bit_length() - 1))  # tensor parallel inside a node ...
            tp = max(t for t in (1, 2, 4, 8) if t <= cap and tp_splits_heads(self.model, t))  # ... splitting the heads
            for pp in (1, 2, 4, 8, 16):
                if n % (tp * pp) or n < tp * pp or not _ok(self.est(gpu, n, "megatron", 1, True, tp, pp)):
                    continue
                choice = choice or self._pick_micro(gpu, "megatron", n, tp, pp)
                out += self._sweep(gpu, "megatron", [n], choice[0], choice[1], False, tp, pp)
                break
            if quick and out:
                break
        return out

    def tp_sizes(self, gpu: GpuSpec) -> list[int]:
        """Tensor-parallel sizes transformers' tp_plan can take here: inside a node, dividing the heads."""
        return [tp for tp in (2, 4, 8) if tp <= gpu.gpus_per_node and tp_splits_heads(self.model, tp)]

    def _fsdp_tp(self, gpu: GpuSpec, counts: list[int], quick: bool,
                 same: tuple[int, bool] | None = None) -> list[Cand]:
        """FSDP x TP: per GPU count, the smallest tp at which micro-batch 1 with checkpointing fits; at
        ``same`` (micro-batch, checkpointing) when given, else the largest fitting micro-batch."""
        out: list[Cand] = []
        choice: dict[int, tuple[int, bool]] = {tp: same for tp in self.tp_sizes(gpu)} if same else {}
        for n in counts:
            for tp in self.tp_sizes(gpu):
                if n % tp or n < 2 * tp and not self.req.num_gpus or not _ok(self.est(gpu, n, "fsdp-tp", 1, True, tp)):
                    continue
                if tp not in choice:
                    choice[tp] = self._pick_micro(gpu, "fsdp-tp", n, tp)
                out += self._sweep(gpu, "fsdp-tp", [n], choice[tp][0], choice[tp][1], False, tp)
                break
            if quick and out:
                break
        return out

    def _record(self, gpu: GpuSpec, s: str, counts: list[int]) -> list[Cand]:
        """Why nothing fits on this tier, with the numbers, for the tiers table."""
        valid = self._valid(s, counts) or counts
        n = valid[-1]
        tp = max(self.tp_sizes(gpu), default=2) if s == "fsdp-tp" else 1
        e = self.est(gpu, n, s, 1, True, tp)
        if e is None:
            self.misses[gpu.id] = Miss(f"{s} on {n} GPU(s) is not a valid configuration", f"{s} on {n} GPU(s): invalid")
            return []
        need_gib, usable_gib, host_gib = e.memory_per_gpu_bytes / GIB, e.usable_bytes / GIB, e.cpu_memory_per_node_bytes / GIB
        if e.memory_per_gpu_bytes > e.usable_bytes:
            why = f"{memory_binding(e, gpu)} with {s} on {n} GPUs (micro-batch 1, checkpointing on)"
            short = f"GPU memory {need_gib:,.1f}/{usable_gib:,.1f} GiB usable"
        elif not e.cpu_fits:
            why = f"host RAM {host_gib:,.0f}/{gpu.host_ram_gib_per_node:g} GiB per node for the offload with {s} on {n} GPUs"
            short = f"host RAM {host_gib:,.0f}/{gpu.host_ram_gib_per_node:,.0f} GiB"
        elif not e.fits:  # fits in memory, but the estimator's notes say it cannot run (fabric, node count)
            why = f"{s} on {n} GPUs: " + "; ".join(e.notes)
            short = e.notes[0] if e.notes else "not runnable"
        else:
            why = short = f"{s} on {n} GPUs: no throughput estimate"
        self.misses[gpu.id] = Miss(why, short, e)
        return []
