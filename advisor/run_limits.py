"""What `sftplan run` runs, beyond its list of strategies: the strategies it cannot run at all, the layouts it runs for
full SFT only, and the one that refuses packed rows.

One module for both sides, so they cannot drift apart: the planner (advisor/planner.py, advisor/plan_search.py)
refuses a request, or passes over a layout, that the executor would refuse, and executor/preflight.py refuses the
plan, each with the reason given here.
"""

from __future__ import annotations

# strategies the estimator models but the executor does not run (executor/translate.py SUPPORTED; a test keeps the
# two apart): a plan recommending one is a what-if
ESTIMATED_ONLY = ("megatron",)
# LoRA is trained through peft on single, ddp, fsdp and zero3 (executor/lora.py); these layouts take full SFT only
FULL_SFT_ONLY = ("hsdp", "fsdp-tp", "zero3-sp")
# DeepSpeed's Ulysses wrapper drops the attention mask on sdpa (causal over the whole gathered row), so packed
# examples would attend to each other (tests/executor/test_sequence_parallel.py)
UNPACKED_ONLY = ("zero3-sp",)


def estimated_only_reason(strategy: str) -> str:
    return f"'{strategy}' is estimated only: `sftplan run` cannot run it"


def full_sft_only_reason(strategy: str) -> str:
    return f"'{strategy}' runs full-sft plans only; a LoRA plan runs on single, ddp, fsdp or zero3"


def unpacked_only_reason(strategy: str) -> str:
    return (f"'{strategy}' runs unpacked rows only (request packing: false): DeepSpeed's Ulysses on sdpa drops the "
            "packed-sequence mask")


def run_refusal(strategy: str | None, method: str, packing: bool) -> str | None:
    """Why the executor refuses `strategy` for a `method` plan ("full-sft" / "lora") with `packing`; None: it runs."""
    if strategy in UNPACKED_ONLY and packing:
        return unpacked_only_reason(strategy)
    if strategy in FULL_SFT_ONLY and method == "lora":
        return full_sft_only_reason(strategy)
    return None
