"""LoRA / DoRA through peft: the adapter executor/train.py trains when the approved plan's method is lora.

The plan's ``lora`` block (advisor/models.py LoraSettings, chosen by advisor/lora_plan.py) says rank,
alpha, dropout, DoRA and the target modules; a LoRA plan without the block (an older plan) takes the
same defaults here. Only the adapter trains: ``get_peft_model`` freezes every base weight.

Strategies (checked on CPU with gloo, peft 0.21 / transformers 5.24 / accelerate 1.15, through the
executor/cpu_dist.py shims):

- single / ddp: the PeftModel goes to Trainer as is.
- fsdp (FSDP2): the adapter is attached before Trainer shards the model, so ``fully_shard`` shards
  frozen base weights and adapter weights alike (DTensors); FSDP2 handles units that mix frozen and
  trainable parameters (FSDP1 needed use_orig_params; Trainer also installs peft's
  ``fsdp_auto_wrap_policy`` through ``update_fsdp_plugin_peft``). DoRA reads its base weight inside
  the decoder layer's forward, where FSDP has unsharded the whole layer.
- zero3: the base model is loaded under ZeRO-3's ``zero.Init`` (partitioned while loading), the
  adapter is added after (peft gathers the base weights for DoRA's magnitude init), and DeepSpeed
  partitions the new adapter parameters when the engine starts. DoRA's forward reads the base weight
  right after the base layer's forward; ZeRO-3 still holds it gathered there (checked: wrapping that
  read in ``GatheredParameters`` fails with "still active in submodules"), so no shim is needed.

Checkpoints: Trainer saves a PeftModel as adapter_config.json + adapter_model.safetensors (no base
weights) beside the optimizer and trainer state, and resumes through ``load_adapter``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from advisor.lora_plan import TARGET_MODULES

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# All linear projections of each family's decoder layer: the planner's table (advisor/lora_plan.py), so
# the plan and the run name the same modules. A family not listed gets peft's "all-linear" (every
# nn.Linear but the output head).
ALL_LINEAR = "all-linear"
DEFAULT_RANK, DEFAULT_ALPHA, DEFAULT_DROPOUT, DEFAULT_DORA = 16, 32, 0.05, True


def target_modules(family: str) -> list[str] | str:
    return list(TARGET_MODULES.get(family, [])) or ALL_LINEAR


def is_lora(plan) -> bool:
    return plan.method == "lora"


def settings(plan) -> dict:
    """rank, alpha, dropout, dora, target_modules for the plan (its ``lora`` block, else the defaults)."""
    block = getattr(plan, "lora", None)
    if block is not None:
        targets = list(block.target_modules) or target_modules(plan.model.family)
        return {"rank": block.rank, "alpha": block.alpha, "dropout": block.dropout, "dora": block.dora,
                "target_modules": targets}
    alt = plan.lora_alternative
    return {"rank": alt.rank or DEFAULT_RANK, "alpha": 2 * (alt.rank or DEFAULT_RANK), "dropout": DEFAULT_DROPOUT,
            "dora": alt.dora, "target_modules": target_modules(plan.model.family)}


def lora_config(plan):
    from peft import LoraConfig, TaskType

    s = settings(plan)
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=s["rank"], lora_alpha=s["alpha"], lora_dropout=s["dropout"],
                      use_dora=s["dora"], target_modules=s["target_modules"], bias="none")


def wrap(model, plan, *, seed: int = 42):
    """The base model with the plan's adapter attached; only adapter parameters require gradients.

    Seeded first: lora_A is drawn at random (Kaiming), before Trainer seeds anything, so without it two
    runs of one plan (and two ranks of one run, each keeping its own shard) would start from different
    adapters."""
    from peft import get_peft_model
    from transformers import set_seed

    set_seed(seed)
    if plan.recommended.activation_checkpointing:
        # checkpointed blocks whose inputs (frozen embeddings) need no grad would get no gradient at all
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(plan))


def is_adapter_param(name: str) -> bool:
    return "lora_" in name


# --------------------------------------------------------------------------- what trains, what is sharded


def _local_numel(p) -> tuple[int, int]:
    if hasattr(p, "ds_tensor"):
        return p.ds_tensor.numel(), p.ds_numel
    if hasattr(p, "to_local"):
        return p.to_local().numel(), p.numel()
    return p.numel(), p.numel()


def _has_grad(p) -> bool:
    if hasattr(p, "ds_id"):  # ZeRO-3 keeps the gradient in its partitioned buffers, not p.grad
        from deepspeed.utils import safe_get_local_grad

        return safe_get_local_grad(p) is not None
    return p.grad is not None


def param_report(model) -> dict:
    """Adapter vs frozen parameter elements this rank holds locally (and in full)."""
    out = {"adapter_local_numel": 0, "adapter_full_numel": 0, "frozen_local_numel": 0, "frozen_full_numel": 0,
           "trainable_not_adapter": []}
    for name, p in model.named_parameters():
        local, full = _local_numel(p)
        kind = "adapter" if is_adapter_param(name) else "frozen"
        out[f"{kind}_local_numel"] += local
        out[f"{kind}_full_numel"] += full
        if p.requires_grad and kind == "frozen":
            out["trainable_not_adapter"].append(name)
    return out


def grad_report(model) -> dict:
    """After a backward: which parameters hold a gradient (adapter ones only, for a LoRA run; lora_A's is
    still zero at the first step, since lora_B starts at zero)."""
    with_grad = [name for name, p in model.named_parameters() if p.requires_grad and _has_grad(p)]
    frozen_with_grad = [name for name, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
    return {"params_with_grad": len(with_grad), "non_adapter_with_grad": [n for n in with_grad if not is_adapter_param(n)]
            + frozen_with_grad, "adapter_with_grad": sum(1 for n in with_grad if is_adapter_param(n))}


def adapter_checksum(model) -> list[float]:
    """Sum and sum of squares of the adapter elements this rank holds: under ddp every rank holds the same
    adapter after training (gradients are all-reduced), so the ranks' checksums match."""
    import torch

    total = squares = 0.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_adapter_param(name):
                t = p.ds_tensor if hasattr(p, "ds_tensor") else p.to_local() if hasattr(p, "to_local") else p
                t = t.detach().double()
                total += float(t.sum())
                squares += float((t * t).sum())
    return [total, squares]


def lora_callbacks(plan, run_dir: Path) -> list:
    """For a LoRA plan, a TrainerCallback writing RUN_DIR/shards/lora-rank-<r>.json: adapter vs frozen
    parameters this rank holds at the start, which hold gradients at the first optimizer step, and the
    checksum of its adapter elements at the end.
    It goes first in the callback list: after the golden baseline's forward, FSDP2 keeps the root
    module's parameters unsharded until the first backward, which would read as unsharded weights."""
    if not is_lora(plan):
        return []
    from transformers import TrainerCallback

    class LoraReportCallback(TrainerCallback):
        def __init__(self):
            self.report: dict = {}
            self.model = None

        def _write(self):
            out = run_dir / "shards"
            out.mkdir(exist_ok=True)
            r = int(os.environ.get("RANK", "0"))
            tmp = out / f".lora-rank-{r}.json.tmp"
            tmp.write_text(json.dumps(dict(self.report, rank=r)) + "\n")
            os.replace(tmp, out / f"lora-rank-{r}.json")

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.model = model
            self.report = param_report(model)
            self._write()

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if "grads" not in self.report:
                self.report["grads"] = grad_report(model or self.model)
                self._write()

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.report["adapter_local_checksum"] = adapter_checksum(model or self.model)
            self._write()

    return [LoraReportCallback()]


# --------------------------------------------------------------------------- export


def adapter_files(ckpt: Path) -> list[Path]:
    return [ckpt / ADAPTER_CONFIG, ckpt / ADAPTER_WEIGHTS]


def is_adapter_checkpoint(ckpt: Path) -> bool:
    return all(f.is_file() for f in adapter_files(ckpt))


MERGED_DIR = "merged"


def base_model_dir(run_dir: Path, plan) -> str:
    """The base model the run trained on: config/inputs.json's absolute path, else the plan's."""
    inputs = run_dir / "config" / "inputs.json"
    if inputs.is_file():
        return json.loads(inputs.read_text())["model"]
    return plan.request.model_path or plan.request.model


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """base + adapter merged into plain weights (peft ``merge_and_unload``), saved as safetensors in ``out_dir``.

    Merged in fp32 and saved in the base checkpoint's own dtype, so the file is the base model's size."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = getattr(AutoConfig.from_pretrained(str(base_dir)), "dtype", None) or torch.float32
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    if isinstance(dtype, torch.dtype) and dtype != torch.float32:
        merged = merged.to(dtype)
    out = Path(out_dir)
    merged.save_pretrained(out, safe_serialization=True)
    return out


def export_adapter(ckpt: Path, dest: Path, *, base_dir: str, merge: bool, tokenizer_globs) -> list[str]:
    """Copy the checkpoint's adapter into ``dest`` (and, with ``merge``, merged weights into dest/merged).

    adapter_config.json names the base model (``base_model_name_or_path``, the folder it trained on), so
    ``AutoModelForCausalLM.from_pretrained(dest)`` or ``PeftModel.from_pretrained(base, dest)`` loads it.
    Returns the files written, relative to ``dest``."""
    import shutil

    if not is_adapter_checkpoint(ckpt):
        from advisor.errors import UserError

        raise UserError(f"{ckpt}: a LoRA run's checkpoint without {ADAPTER_CONFIG} + {ADAPTER_WEIGHTS}")
    written = []
    for f in adapter_files(ckpt):
        shutil.copy2(f, dest / f.name)
        written.append(f.name)
    tokenizer_files = [f for pattern in tokenizer_globs for f in ckpt.glob(pattern) if f.is_file()]
    for f in tokenizer_files:
        shutil.copy2(f, dest / f.name)
        written.append(f.name)
    if merge:
        merged = merge_adapter(base_dir, ckpt, dest / MERGED_DIR)
        for f in tokenizer_files:
            shutil.copy2(f, merged / f.name)
        written += [f"{MERGED_DIR}/{p.name}" for p in sorted(merged.iterdir())]
    return written
