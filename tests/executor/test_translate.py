"""translate.py (pure): plan -> TrainingArguments kwargs (transformers 5.x names), DeepSpeed and FSDP dicts."""

import subprocess
import sys

import pytest

from advisor.errors import UserError
from tinyplan import data_files_only, tiny_plan


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Only the data files (hashed into the plan); translation never reads the model."""
    return data_files_only(tmp_path_factory.mktemp("tiny"))


def _with(plan, **rec):
    return plan.replace(**{"recommended": plan.recommended.replace(**rec)})


def test_training_arguments_from_plan(assets):
    from executor.translate import training_arguments

    plan = tiny_plan(assets, strategy="fsdp", num_gpus=2, epochs=3, learning_rate=2e-5, micro_batch_size=2, grad_accum=4)
    kw = training_arguments(plan, "/runs/x", bf16=True, accelerator=True)
    assert kw["num_train_epochs"] == 3 and kw["learning_rate"] == 2e-5 and kw["lr_scheduler_type"] == "cosine"
    assert kw["per_device_train_batch_size"] == 2 and kw["gradient_accumulation_steps"] == 4
    assert kw["warmup_steps"] == 0.1 and kw["weight_decay"] == 0.0 and kw["bf16"] is True
    assert kw["save_strategy"] == "epoch" and kw["save_total_limit"] == 3 and kw["eval_strategy"] == "no"
    assert kw["fsdp"] is True and kw["fsdp_config"]["state_dict_type"] == "SHARDED_STATE_DICT"
    assert kw["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert "use_cpu" not in kw and "deepspeed" not in kw
    cpu = training_arguments(plan, "/runs/x", bf16=False, accelerator=False)
    assert cpu["ddp_backend"] == "gloo" and cpu["use_cpu"] is False  # the cpu_dist shims need use_cpu False
    single = training_arguments(_with(plan, strategy="single", num_gpus=1), "/r", bf16=False, accelerator=False)
    assert single["use_cpu"] is True and "fsdp" not in single and "ddp_backend" not in single


def test_kwargs_are_valid_training_arguments(assets, tmp_path):
    """Every key is a TrainingArguments field of the installed transformers (5.x names)."""
    import dataclasses

    from transformers import TrainingArguments

    from executor.translate import training_arguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    for strategy, n in (("single", 1), ("fsdp", 2), ("zero3", 2), ("zero3-offload-all", 2), ("ddp", 2)):
        kw = training_arguments(tiny_plan(assets, strategy=strategy, num_gpus=n), str(tmp_path), bf16=False,
                                accelerator=True)
        assert set(kw) <= fields, set(kw) - fields


def test_deepspeed_dicts(assets):
    from executor.translate import deepspeed_config, fsdp_config

    z3 = deepspeed_config(tiny_plan(assets, strategy="zero3", num_gpus=2))
    zo = z3["zero_optimization"]
    assert zo["stage"] == 3 and zo["stage3_param_persistence_threshold"] == 0
    assert zo["stage3_gather_16bit_weights_on_model_save"] is True
    assert "optimizer" not in z3 and "scheduler" not in z3  # no fused_adam compile; Trainer's cosine schedule
    assert z3["train_micro_batch_size_per_gpu"] == "auto" and z3["bf16"] == {"enabled": "auto"}
    assert "offload_optimizer" not in zo and "offload_param" not in zo
    off = deepspeed_config(tiny_plan(assets, strategy="zero3-offload", num_gpus=2))["zero_optimization"]
    assert off["offload_optimizer"]["device"] == "cpu" and "offload_param" not in off
    both = deepspeed_config(tiny_plan(assets, strategy="zero3-offload-all", num_gpus=2))["zero_optimization"]
    assert both["offload_param"]["device"] == "cpu"
    assert deepspeed_config(tiny_plan(assets, strategy="zero2", num_gpus=2))["zero_optimization"]["stage"] == 2
    big = tiny_plan(assets, strategy="zero3", num_gpus=2)
    big = big.replace(**{"model": big.model.replace(**{"params": 8_000_000_000})})
    assert deepspeed_config(big)["zero_optimization"]["stage3_param_persistence_threshold"] == "auto"
    assert deepspeed_config(tiny_plan(assets, strategy="fsdp", num_gpus=2)) is None
    assert fsdp_config(tiny_plan(assets, strategy="zero3", num_gpus=2)) is None


def test_refusals_in_one_place(assets):
    """preflight.check_plan is the one place a plan is refused; translate/launch take its CheckedPlan and check
    nothing again."""
    from advisor.planfile import approve, with_hash

    from executor.preflight import CheckedPlan, check_plan

    assert check_plan(approve(tiny_plan(assets, method="lora"), by="t")).strategy == "single"  # LoRA runs (peft)
    with pytest.raises(UserError, match="megatron"):
        check_plan(approve(with_hash(_with(tiny_plan(assets), strategy="megatron")), by="t"))
    with pytest.raises(UserError, match="not approved"):
        check_plan(tiny_plan(assets))
    checked = check_plan(approve(tiny_plan(assets, strategy="fsdp", num_gpus=2), by="t"))
    assert isinstance(checked, CheckedPlan) and checked.strategy == "fsdp"
    import executor.launch
    import executor.translate

    for module in (executor.translate, executor.launch):
        text = open(module.__file__).read()
        assert "UserError" not in text and "lora" not in text, module.__name__


def test_pure_no_torch():
    code = ("import sys; import executor.translate, executor.launch, executor.run, advisor.cli.execute, advisor.rows, "
            "executor.names, executor.integrity, executor.preflight; "
            "bad = [m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
