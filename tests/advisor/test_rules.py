"""Each rule on its own: verdict, the numbers in its reason, and its source sentence from the guide."""

from pathlib import Path

import pytest

from advisor import rules
from advisor.models import DataFile, DatasetSpec, PlanRequest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "SOURCES.md"  # the guide, kept in the repo
BEYOND = Path(__file__).resolve().parents[2] / "docs" / "SOURCES_BEYOND_GUIDE.md"  # libraries' advice the guide lacks
LIBRARY_CITED = ("S_HSDP", "S_FSDP_TP", "S_ULYSSES")  # layouts the guide does not name: quoted from the libraries that run them


def req(examples=50_000, **kw) -> PlanRequest:
    return PlanRequest(model="8B", dataset=DatasetSpec(examples=examples, avg_tokens=512), **kw)


def _guide_text() -> str:
    return GUIDE.read_text()


@pytest.mark.parametrize("name", [n for n in dir(rules) if n.startswith("S_") and n not in ("S_QLORA_LR", "S_HOUSE", "S_MEMORY")])
def test_every_quoted_sentence_is_verbatim_in_the_guide(name):
    text = BEYOND.read_text() if name in LIBRARY_CITED else _guide_text()
    for sentence in getattr(rules, name).split(". "):
        assert sentence.strip(". ") in text, f"{name}: {sentence!r} is not in {'SOURCES_BEYOND_GUIDE.md' if name in LIBRARY_CITED else 'SOURCES.md'}"


def test_under_10k_is_lora_with_the_count():
    f = rules.rule_under_10k(req(5_000))
    assert f.verdict == "lora" and "5,000" in f.why and f.source == rules.S_LORA_WHEN
    assert rules.rule_under_10k(req(10_000)) is None


def test_lora_goals_win_whatever_the_data_size():
    for goal in ("fast-iteration", "lora-cleared-bar"):
        method, findings = rules.decide_method(req(2_000_000, goals=[goal, "deep-retask"]), 100.0)
        assert method == "lora"
        assert any(f.rule_id.endswith(goal) for f in findings)


def test_full_sft_needs_a_reason_data_and_budget():
    assert rules.decide_method(req(50_000, goals=["lora-below-bar"]), 500.0)[0] == "full-sft"
    method, findings = rules.decide_method(req(50_000), 500.0)
    assert method == "lora" and findings[-1].rule_id == "method.default-lora"
    assert "rank 16 with DoRA" in findings[-1].source
    method, findings = rules.decide_method(req(50_000, goals=["deep-retask"], budget_usd=100), 500.0)
    assert method == "lora"
    compute = next(f for f in findings if f.rule_id == "method.compute")
    assert "$500" in compute.why and "$100" in compute.why


def test_forced_full_sft_marks_the_rules_it_overrides():
    method, findings = rules.decide_method(req(5_000, method="full-sft"), 10.0)
    assert method == "full-sft"
    under = next(f for f in findings if f.rule_id == "method.under-10k")
    assert under.overridden
    assert any(f.rule_id == "method.forced" and "lora" in f.why for f in findings)


def test_forced_method_that_agrees_overrides_nothing():
    method, findings = rules.decide_method(req(5_000, method="lora"), 10.0)
    assert method == "lora" and not any(f.overridden for f in findings)


def test_learning_rate_two_orders_below_lora_and_lower_for_instruct():
    lr, fs = rules.rule_learning_rate(8_000_000_000, "base", None)
    assert lr == pytest.approx(2e-6)
    assert "2e-04" in fs[0].why and "QLoRA" in fs[0].why
    lr_i, fs_i = rules.rule_learning_rate(8_000_000_000, "instruct", None)
    assert lr_i < lr
    warn = next(f for f in fs_i if f.rule_id == "hparams.instruct-alignment")
    assert warn.verdict == "warning" and "alignment" in warn.why and "Aggressive LR" in warn.source
    assert rules.rule_learning_rate(70_000_000_000, "base", None)[0] < lr


def test_learning_rate_override_is_said():
    lr, fs = rules.rule_learning_rate(8e9, "base", 1e-4)
    assert lr == 1e-4
    assert fs[0].overridden
    assert any(f.rule_id == "hparams.lr-too-high" for f in fs)


def test_schedule_weight_decay_epochs_in_the_guides_ranges():
    for steps in (1, 500, 5_000, 50_000):
        ratio, f = rules.rule_warmup(steps)
        assert 0.01 <= ratio <= 0.03 and "cosine" in f.verdict
    for n in (20_000, 5_000_000):
        wd, _ = rules.rule_weight_decay(n)
        assert 0.05 <= wd <= 0.1
    assert rules.rule_epochs(50_000, None)[0] == 3
    assert rules.rule_epochs(2_000_000, None)[0] == 1
    assert rules.rule_epochs(50_000, 5)[0] == 5


def test_global_batch_is_sensible_and_never_zero():
    assert rules.global_batch_sequences(2048, 1_000_000) == 128
    assert rules.global_batch_sequences(2048, 3) == 1
    assert rules.global_batch_sequences(0, 0) == 1


def test_parallelism_findings_cite_the_guide():
    f = rules.rule_parallelism("fsdp", 8, 1, 8_000_000_000, 8)
    assert f.rule_id == "parallel.fsdp" and f.source == rules.S_PARALLEL and "8 GPUs" in f.why
    assert rules.rule_parallelism("fsdp", 16, 2, 70e9, 8).rule_id == "parallel.multi-node"
    assert rules.rule_parallelism("zero3-offload", 8, 1, 70e9, 8).source == rules.S_PARALLEL
    assert rules.rule_no_megatron(405e9, False).verdict == "fsdp"
    assert rules.rule_no_megatron(405e9, True) is None
    assert rules.rule_no_megatron(8e9, False) is None


def test_checkpointing_keeps_three_with_disk():
    ck, f = rules.rule_checkpointing(10 * 2**30)
    assert ck.keep_last == 3 and ck.every == "epoch"
    assert ck.disk_gib == pytest.approx(30.0) and "30.0 GiB" in f.why


def test_evaluation_suite_and_tolerance():
    golden = DataFile(path="g.jsonl", sha256="0" * 64, rows=10)
    ev, fs = rules.rule_evaluation(req(golden=golden, gate_tolerance=0.05))
    assert ev.tolerance == 0.05 and ev.golden == golden
    assert [d.name for d in ev.deploy_suite] == ["MMLU-Pro", "IFEval", "golden set", "HarmBench", "bias audit"]
    assert any("MMLU-Pro" in f.source for f in fs)
    _, fs2 = rules.rule_evaluation(req())
    assert any(f.rule_id == "eval.no-golden" for f in fs2)
