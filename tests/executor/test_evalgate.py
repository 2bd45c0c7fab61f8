"""Eval gate: golden loading (every bad row reported), judge verdicts by hand, gate.json recording
(atomic, idempotent on resume), best passing epoch, and score_golden on a tiny random Llama."""

import json

import pytest

from advisor.errors import UserError
from advisor.models import Evaluation
from executor.evalgate import (
    GoldenExample, best_passing_epoch, judge, load_golden, normalize, read_gate, record_baseline, record_epoch,
    score_golden,
)

EV = Evaluation(tolerance=0.02)
BASE = {"loss": 2.0, "exact_match": 0.5, "contains": 0.6}


# --------------------------------------------------------------------------- loading


def test_load_golden_both_formats(tmp_path):
    p = tmp_path / "golden.jsonl"
    p.write_text(json.dumps({"prompt": "2+2?", "expected": "4"}) + "\n\n"
                 + json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": "capital of France?"},
                                            {"role": "assistant", "content": "Paris"}]}) + "\n")
    got = load_golden(p)
    assert got == [GoldenExample([{"role": "user", "content": "2+2?"}], "4"),
                   GoldenExample([{"role": "system", "content": "be brief"},
                                  {"role": "user", "content": "capital of France?"}], "Paris")]
    assert got[1].where.endswith("golden.jsonl:3")


def test_load_golden_reports_every_bad_row(tmp_path):
    p = tmp_path / "golden.jsonl"
    p.write_text("\n".join([
        json.dumps({"prompt": "ok", "expected": "fine"}),
        "{not json",
        json.dumps({"prompt": "no answer"}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}),
        json.dumps([1, 2]),
        json.dumps({"text": "what"}),
    ]) + "\n")
    with pytest.raises(UserError) as exc:
        load_golden(p)
    msg = str(exc.value)  # one line: the first bad row, the count and lines of the rest
    assert msg.startswith(f"{p}:2: not valid JSON") and "\n" not in msg
    assert msg.endswith("(and 4 more bad golden rows: lines 3, 4, 5, 6)")


def test_load_golden_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_golden(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------------- judge


def test_judge_passes_within_tolerance():
    score = {"loss": 2.0 * 1.02, "exact_match": 0.48, "contains": 0.58}
    assert judge(BASE, score, EV) == {"passed": True, "reasons": []}


def test_judge_improvement_passes():
    assert judge(BASE, {"loss": 1.0, "exact_match": 0.9, "contains": 0.9}, EV)["passed"]


def test_judge_loss_rise_beyond_tolerance_fails():
    v = judge(BASE, {"loss": 2.05, "exact_match": 0.5, "contains": 0.6}, EV)
    assert not v["passed"] and len(v["reasons"]) == 1
    assert "golden loss 2.0500 rose 2.5% above the baseline 2.0000" in v["reasons"][0]


def test_judge_score_drops_fail_each_with_a_reason():
    v = judge(BASE, {"loss": 1.9, "exact_match": 0.47, "contains": 0.5}, EV)
    assert not v["passed"]
    assert [r.split()[0] for r in v["reasons"]] == ["exact_match", "contains"]


def test_judge_nan_loss_fails():
    v = judge(BASE, {"loss": float("nan"), "exact_match": 0.5, "contains": 0.6}, EV)
    assert not v["passed"] and "not finite" in v["reasons"][0]


def test_judge_min_golden_score():
    ev = Evaluation(tolerance=0.5, min_golden_score=0.7)
    v = judge(BASE, {"loss": 1.0, "exact_match": 0.6, "contains": 0.65}, ev)
    assert not v["passed"] and "min_golden_score 0.7" in v["reasons"][0]
    assert judge(BASE, {"loss": 1.0, "exact_match": 0.6, "contains": 0.7}, ev)["passed"]


def test_zero_tolerance_allows_equal_but_not_worse():
    ev = Evaluation(tolerance=0.0)
    assert judge(BASE, dict(BASE), ev)["passed"]
    assert not judge(BASE, {**BASE, "loss": 2.0001}, ev)["passed"]


# --------------------------------------------------------------------------- gate.json


def test_gate_recording_is_idempotent_and_picks_the_best(tmp_path):
    assert read_gate(tmp_path) == {"baseline": None, "epochs": [], "thresholds": {}}
    with pytest.raises(UserError, match="no baseline"):
        record_epoch(tmp_path, epoch=1, step=5, checkpoint="checkpoint-5", score=BASE, evaluation=EV)
    assert record_baseline(tmp_path, BASE, EV) == BASE
    # a resumed run must not overwrite the base model's baseline with the resumed weights' score
    assert record_baseline(tmp_path, {"loss": 0.1, "exact_match": 1.0, "contains": 1.0}, EV) == BASE
    v1 = record_epoch(tmp_path, epoch=1.0, step=5, checkpoint=str(tmp_path / "checkpoint-5"),
                      score={"loss": 1.8, "exact_match": 0.5, "contains": 0.6}, evaluation=EV)
    v2 = record_epoch(tmp_path, epoch=2, step=10, checkpoint="checkpoint-10",
                      score={"loss": 1.5, "exact_match": 0.7, "contains": 0.7}, evaluation=EV)
    v3 = record_epoch(tmp_path, epoch=3, step=15, checkpoint="checkpoint-15",
                      score={"loss": 9.0, "exact_match": 0.0, "contains": 0.0}, evaluation=EV)
    assert v1["passed"] and v2["passed"] and not v3["passed"]
    # resume re-records epoch 2: replaced, not duplicated
    record_epoch(tmp_path, epoch=2, step=10, checkpoint="checkpoint-10",
                 score={"loss": 1.5, "exact_match": 0.7, "contains": 0.7}, evaluation=EV)
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert [e["epoch"] for e in gate["epochs"]] == [1, 2, 3]
    assert gate["epochs"][0]["checkpoint"] == "checkpoint-5"
    assert gate["baseline"] == BASE and gate["thresholds"]["tolerance"] == 0.02
    assert gate["epochs"][2]["reasons"] and not gate["epochs"][2]["passed"]
    assert best_passing_epoch(tmp_path)["epoch"] == 2
    assert not list(tmp_path.glob(".gate.json.*"))  # no temp files left behind


_EPOCH = {"epoch": 1, "step": 5, "checkpoint": "checkpoint-5", "score": BASE, "passed": True, "reasons": []}


@pytest.mark.parametrize("text", ["[]", "null", '"s"', '{"epochs": "x"}', '{"epochs": [1]}', '{"epochs": [{}]}',
                                  json.dumps({"baseline": BASE, "epochs": [{**_EPOCH, "score": {"loss": "x"}}]}),
                                  json.dumps({"baseline": BASE, "epochs": [{**_EPOCH, "checkpoint": "../x"}]}),
                                  json.dumps({"baseline": None, "epochs": [_EPOCH]}),
                                  json.dumps({"baseline": [1], "epochs": []})])
def test_a_gate_of_the_wrong_shape_is_one_line_naming_the_file(tmp_path, text):
    (tmp_path / "gate.json").write_text(text)
    for read in (read_gate, best_passing_epoch):
        with pytest.raises(UserError, match=r"gate\.json: not a gate report \(") as exc:
            read(tmp_path)
        assert str(tmp_path / "gate.json") in str(exc.value) and "\n" not in str(exc.value)
    (tmp_path / "gate.json").write_text(json.dumps({"baseline": BASE, "epochs": [_EPOCH], "thresholds": {}}))
    assert best_passing_epoch(tmp_path)["epoch"] == 1


def test_no_passing_epoch(tmp_path):
    record_baseline(tmp_path, BASE, EV)
    record_epoch(tmp_path, epoch=1, step=1, checkpoint="checkpoint-1",
                 score={"loss": 50.0, "exact_match": 0.0, "contains": 0.0}, evaluation=EV)
    assert best_passing_epoch(tmp_path) is None


def test_normalize():
    assert normalize("  Paris \n\t is  nice ") == "Paris is nice"


# --------------------------------------------------------------------------- scoring a real model


def _tiny_model_and_tokenizer():
    """The embedded tiny Llama (random, seeded) and its locally trained tokenizer with a ChatML template."""
    from executor.tiny import build_model, build_tokenizer

    tok = build_tokenizer(["user\nwhat is two plus two?\nassistant\nfour, assistant: four. the capital is paris"] * 20,
                          vocab_size=300)
    return build_model(len(tok), tok, seed=0), tok


def test_score_golden_on_a_tiny_llama():
    import torch

    model, tok = _tiny_model_and_tokenizer()
    model.train()
    examples = [GoldenExample([{"role": "user", "content": "what is two plus two?"}], "four"),
                GoldenExample([{"role": "user", "content": "the capital of france?"}], "paris")] * 3
    score = score_golden(model, tok, examples, max_new_tokens=4)
    assert set(score) == {"loss", "exact_match", "contains"}
    assert 0 < score["loss"] < 20 and 0 <= score["exact_match"] <= score["contains"] <= 1
    assert model.training  # mode restored
    # deterministic, and the loss is the answer tokens' loss only: changing the prompt changes it,
    # a hand computation on the first example agrees
    assert score_golden(model, tok, examples, max_new_tokens=4) == score
    ex = examples[0]
    prompt = tok.apply_chat_template(ex.messages, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(ex.messages + [{"role": "assistant", "content": "four"}], tokenize=False)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    f_ids = tok(full, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([f_ids])).logits[0]
    want = torch.nn.functional.cross_entropy(logits[len(p_ids) - 1:-1], torch.tensor(f_ids[len(p_ids):]))
    one = score_golden(model, tok, [ex], max_new_tokens=2)
    assert abs(one["loss"] - float(want)) < 1e-4


def test_score_golden_counts_a_model_that_answers_right():
    """A model forced to emit the expected answer scores exact_match 1 (generation path is honest)."""
    import torch

    model, tok = _tiny_model_and_tokenizer()
    ex = GoldenExample([{"role": "user", "content": "what is two plus two?"}], "four")
    answer = tok("four", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    prompt_len = len(tok.apply_chat_template(ex.messages, tokenize=False, add_generation_prompt=True))
    calls = {"n": 0}
    orig_forward = model.forward

    def forced(*args, **kwargs):
        out = orig_forward(*args, **kwargs)
        if not torch.is_grad_enabled() and kwargs.get("labels") is None and out.logits.shape[1] >= 1:
            k = min(calls["n"], len(answer) - 1)
            out.logits[:, -1, :] = -1e9
            out.logits[:, -1, answer[k]] = 1e9
            calls["n"] += 1
        return out

    score_loss = score_golden(model, tok, [ex], max_new_tokens=6)  # unforced: baseline numbers
    model.forward = forced
    calls["n"] = -1  # the loss forward pass comes first and is not a generation step
    got = score_golden(model, tok, [ex, ex], max_new_tokens=6)
    assert prompt_len > 0 and got["exact_match"] == 1.0 and got["contains"] == 1.0
    assert score_loss["exact_match"] in (0.0, 1.0)


_FSDP2_SCRIPT = r'''
import sys
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
sys.path.insert(0, sys.argv[1])
from test_evalgate import _tiny_model_and_tokenizer, _EXAMPLES
from executor.evalgate import score_golden

dist.init_process_group("gloo")
model, tok = _tiny_model_and_tokenizer()
ref = score_golden(model, tok, _EXAMPLES, max_new_tokens=5)
for layer in model.model.layers:
    fully_shard(layer)
fully_shard(model)
local = sum(p.to_local().numel() for p in model.parameters())
full = sum(p.numel() for p in model.parameters())
assert 0 < local < full, (local, full)  # really sharded
got = score_golden(model, tok, _EXAMPLES, max_new_tokens=5, synced_gpus=True)
assert abs(got["loss"] - ref["loss"]) < 1e-5 and got["exact_match"] == ref["exact_match"], (ref, got)
open(f"{sys.argv[2]}/rank{dist.get_rank()}.ok", "w").write(repr(got))  # files: ranks' stdout interleaves
dist.destroy_process_group()
'''

_EXAMPLES = [GoldenExample([{"role": "user", "content": "what is two plus two?"}], "four"),
             GoldenExample([{"role": "user", "content": "the capital of france? tell me"}], "paris")] * 3


@pytest.mark.slow
def test_score_golden_on_every_rank_of_a_2_process_fsdp2_job(tmp_path):
    """Both ranks call score_golden on a model sharded with FSDP2 (gloo, CPU): same score as unsharded."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "fsdp2_score.py"
    script.write_text(_FSDP2_SCRIPT)
    here = Path(__file__).parent
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": str(here.parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(here), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too: they are in torchrun's session
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.ok")) == ["rank0.ok", "rank1.ok"]


def test_template_whose_prompt_is_not_a_token_prefix_keeps_the_generation_prompt():
    """'assistant: ' + 'four' merges the space into the answer's token: the prompt the model generates
    from stays exactly the generation prompt, and the loss is on the rest of the text."""
    import torch

    model, tok = _tiny_model_and_tokenizer()
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant: {% endif %}")
    ex = GoldenExample([{"role": "user", "content": "what is two plus two?"}], "four")
    prompt = tok.apply_chat_template(ex.messages, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(ex.messages + [{"role": "assistant", "content": "four"}], tokenize=False)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
    assert tok(full, add_special_tokens=False)["input_ids"][:len(p_ids)] != p_ids  # the case under test
    with torch.no_grad():
        logits = model(torch.tensor([p_ids + a_ids])).logits[0]
    want = torch.nn.functional.cross_entropy(logits[len(p_ids) - 1:-1], torch.tensor(a_ids))
    assert abs(score_golden(model, tok, [ex], max_new_tokens=2)["loss"] - float(want)) < 1e-4
