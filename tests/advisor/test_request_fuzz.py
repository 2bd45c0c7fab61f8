"""Fuzzed requests (flags and YAML) never produce a traceback: a PlanRequest/Plan, or one-line UserError / exit 2."""

import argparse
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.cli import _Parser
from advisor.errors import UserError
from advisor.models import PlanRequest
from advisor.cli.request import add_request_arguments, build_request
from advisor.request import load_request_yaml, measure_dataset

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

MODELS = ["llama-3.1-8b", "8B", "0.5B", "nope-model", "", "70b", "-1B"]
FLAG_VALUES = {
    "--model": st.sampled_from(MODELS),
    "--examples": st.sampled_from(["0", "-5", "5000", "50000", "abc", "1e9", "200000"]),
    "--avg-tokens": st.sampled_from(["0", "1", "512", "99999999", "x"]),
    "--max-seq-len": st.sampled_from(["0", "16", "2048", "10000000", "-1"]),
    "--epochs": st.sampled_from(["0", "1", "3", "-2", "1.5"]),
    "--base": st.sampled_from(["base", "instruct", "chat"]),
    "--goal": st.sampled_from(["deep-retask", "fast-iteration", "lora-below-bar", "bogus"]),
    "--budget-usd": st.sampled_from(["0", "-1", "10", "1e6", "nan", "inf", "x"]),
    "--deadline-hours": st.sampled_from(["0", "0.001", "24", "-3", "nan"]),
    "--have": st.sampled_from(["h100-sxm:8", "h100:8", "h100-sxm", ":8", "a10g:0", "h100-sxm:-1", "b200:x"]),
    "--max-gpus": st.sampled_from(["0", "1", "8", "16", "-8", "1000"]),
    "--method": st.sampled_from(["auto", "full-sft", "lora", "qlora"]),
    "--gpu": st.sampled_from(["h100-sxm", "h100", "a10g", "zzz"]),
    "--num-gpus": st.sampled_from(["0", "1", "2", "3", "8"]),
    "--strategy": st.sampled_from(["fsdp", "single", "megatron", "zero3-offload", "bad"]),
    "--learning-rate": st.sampled_from(["0", "1e-5", "-1", "10"]),
    "--gate-tolerance": st.sampled_from(["0", "0.02", "-1"]),
    "--min-golden-score": st.sampled_from(["0.5", "2", "-1"]),
}
argv_strategy = st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=7).flatmap(
    lambda flags: st.tuples(*[FLAG_VALUES[f] for f in flags]).map(
        lambda vals: [x for pair in zip(flags, vals) for x in pair]))


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sftplan plan")
    add_request_arguments(p)
    return p


def _catalog():
    try:
        from advisor.catalog import load_catalog
    except ImportError:
        return None
    return load_catalog()


CATALOG = _catalog()


def _plan_or_user_error(request: PlanRequest) -> None:
    if CATALOG is None:
        return
    from advisor.planner import plan

    try:
        plan(request, CATALOG)
    except UserError as exc:
        assert "\n" not in str(exc)


@FAST
@given(argv=argv_strategy)
def test_fuzzed_flags_give_a_request_or_one_line_error(argv):
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: one line, exit 2
        assert exc.code == 2
        return
    try:
        request = build_request(args)
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    _plan_or_user_error(request)


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**7), st.floats(allow_nan=True), st.text(max_size=8))
yaml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)
request_dicts = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS + [None, 7])},
    optional={
        "dataset": st.one_of(yaml_values, st.fixed_dictionaries({"examples": st.integers(-5, 10**6), "avg_tokens": st.integers(-5, 10**5)})),
        "max_seq_len": scalars, "epochs": scalars, "goals": st.one_of(yaml_values, st.lists(st.sampled_from(["deep-retask", "x"]))),
        "budget_usd": scalars, "have": yaml_values, "method": st.sampled_from(["auto", "full-sft", "lora", 3]),
        "max_gpus": st.integers(-2, 200), "extra_field": scalars, "strategy": st.sampled_from(["fsdp", "ddp", None, "x"]),
    },
)


@FAST
@given(data=request_dicts)
def test_fuzzed_request_yaml_gives_a_request_or_one_line_error(tmp_path, data):
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        request = load_request_yaml(path)
    except UserError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    _plan_or_user_error(request)


@FAST
@given(lines=st.lists(st.one_of(st.text(max_size=20), st.dictionaries(st.text(max_size=4), st.text(max_size=30), max_size=3).map(json.dumps)), max_size=5))
def test_fuzzed_dataset_files_are_measured_or_rejected(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        spec = measure_dataset(str(path), "8B")
    except UserError as exc:  # one line naming the file
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert spec.examples == spec.file.rows >= 1 and spec.token_p50 <= spec.token_p95 <= spec.token_max


def test_dataset_is_counted_hashed_and_measured(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"prompt": "p" * 40, "response": "r" * (4 * i)} for i in range(1, 101)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = measure_dataset(str(path), "8B")
    assert spec.examples == 100 and len(spec.file.sha256) == 64
    assert "characters per token" in spec.token_count_method
    assert spec.token_p50 < spec.token_p95 <= spec.token_max


def test_dataset_uses_the_models_tokenizer_when_present(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = tokenizers.Tokenizer(WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    tok.save(str(model_dir / "tokenizer.json"))
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "a b", "response": "a b"}) + "\n" + json.dumps({"prompt": "a", "response": "b"}) + "\n")
    spec = measure_dataset(str(path), str(model_dir))
    assert "tokenizer.json" in spec.token_count_method
    assert spec.token_max == 4 and spec.token_p50 in (2, 4)
