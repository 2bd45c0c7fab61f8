"""Bad input to `sftplan plan / approve / run`: one line naming the field or file, exit 2, nothing lost."""

import pytest
import yaml

from advisor.cli import main
from advisor.planfile import read_plan, verify

REQ = ["--model", "llama-3.1-8b", "--examples", "50000", "--avg-tokens", "1024", "--have", "h100-sxm:8"]


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("sftplan: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def approved(tmp_path, capsys):
    path = tmp_path / "plan.yaml"
    assert main(["plan", *REQ, "-o", str(path), "--json"]) == 0
    assert main(["approve", str(path), "--by", "Dana"]) == 0
    capsys.readouterr()
    return path


def test_plan_refuses_to_write_over_an_approved_plan(approved, capsys):
    before = approved.read_bytes()
    assert main(["plan", *REQ, "--epochs", "1", "-o", str(approved), "--json"]) == 2
    err = _err(capsys)
    assert str(approved) in err and "approved" in err and "Dana" in err and "--overwrite-approved" in err
    assert approved.read_bytes() == before and verify(read_plan(approved)) == ""
    assert main(["plan", *REQ, "--epochs", "1", "-o", str(approved), "--overwrite-approved", "--json"]) == 0
    assert read_plan(approved).approval is None


def test_plan_refuses_an_empty_output_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", *REQ, "-o", ""]) == 2
    assert "-o: empty file name" in _err(capsys)
    assert not list(tmp_path.iterdir())


def test_approve_never_silently_replaces_an_approval(approved, capsys):
    first = read_plan(approved).approval
    before = approved.read_bytes()
    assert main(["approve", str(approved), "--by", "Someone Else"]) == 2
    err = _err(capsys)
    assert f"{approved}: already approved by Dana at {first.at}" in err
    assert approved.read_bytes() == before
    assert main(["approve", str(approved), "--by", "Dana"]) == 0  # the same reviewer again: unchanged
    assert "already approved by Dana" in capsys.readouterr().out
    assert approved.read_bytes() == before


def test_a_tampered_stamp_can_be_approved_again(approved):
    approved.write_text(approved.read_text().replace("by: Dana", "by: Mallory"))
    assert "stamp was edited" in verify(read_plan(approved))
    assert main(["approve", str(approved), "--by", "Grace"]) == 0
    assert verify(read_plan(approved)) == "" and read_plan(approved).approval.by == "Grace"


@pytest.mark.parametrize("name", ["Dana\nEvil", "Dana\rEvil", "Dana\x1b[31m", "Dana\u202eliveD", "Dana\u2028Evil"])
def test_approve_refuses_control_characters_in_the_name(tmp_path, capsys, name):
    path = tmp_path / "plan.yaml"
    assert main(["plan", *REQ, "-o", str(path), "--json"]) == 0
    capsys.readouterr()
    before = path.read_bytes()
    assert main(["approve", str(path), "--by", name]) == 2
    assert _err(capsys).startswith("sftplan: --by: the approver's name holds a control or invisible character")
    assert path.read_bytes() == before


def test_approve_and_run_name_the_plan_file(tmp_path, capsys):
    path = tmp_path / "pu.yaml"
    assert main(["plan", *REQ, "-o", str(path), "--json"]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run"]) == 2
    assert _err(capsys) == f"sftplan: {path}: plan is not approved (run `sftplan approve PLAN --by NAME`)\n"
    data = yaml.safe_load(path.read_text())
    data["estimate"]["cost_usd"] += 0.01
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["approve", str(path), "--by", "Ada"]) == 2
    assert _err(capsys).startswith(f"sftplan: {path}: plan was edited after it was written")


@pytest.mark.parametrize("argv, want", [
    (["--max-gpus", "4", "--num-gpus", "8"], "sftplan: --num-gpus: pinned to 8 GPUs, above max_gpus 4\n"),
    (["--strategy", "single", "--num-gpus", "4"], "sftplan: --strategy: 'single' needs num_gpus 1, got 4\n"),
    (["--deploy-task", "a=b:c:notnum"], "sftplan: --deploy-task: metric 'c:notnum' holds a ':'"),
    (["--deploy-include-path", "/nonexistent"], "sftplan: --deploy-include-path: /nonexistent: no such folder"),
    (["--network-gbps", "0"], "sftplan: --network-gbps: must be > 0"),
    # what `sftplan run` (executor/preflight.py check_plan) would refuse, refused when the plan is made
    (["--method", "lora", "--strategy", "hsdp"], "sftplan: --strategy: 'hsdp' runs full-sft plans only"),
    (["--strategy", "zero3-sp", "--packing"], "sftplan: --strategy: 'zero3-sp' runs unpacked rows only"),
    # the last of two --have for one tier won; two checks of one name were both kept (results are read by name)
    (["--have", "H100-SXM:4"], "sftplan: --have: h100-sxm is given twice (have[0] too)"),
    (["--deploy-task", "x=t:acc", "--deploy-task", "X=u:acc"], "sftplan: --deploy-task: 'X' is given twice"),
    (["--deploy-task", "x\ny=t:acc"], "sftplan: --deploy-task: the check name 'x\\ny' holds a control character"),
    (["--gpu", ""], "sftplan: --gpu: empty GPU tier"),
    (["--gpu", "cpu", "--num-gpus", "2"], "sftplan: --num-gpus: cpu scales to 1 GPUs in this catalog, got 2"),
    (["--pii", "accept"], "sftplan: --pii acts on the data check of a data file, and none is given"),
])
def test_plan_refuses_what_estimate_and_evaluate_would(tmp_path, capsys, argv, want):
    out = tmp_path / "plan.yaml"
    assert main(["plan", *REQ, *argv, "-o", str(out)]) == 2
    assert _err(capsys).startswith(want)
    assert not out.exists()


def test_plan_takes_the_network_and_says_the_assumed_avg_tokens(capsys):
    import json

    assert main(["plan", "--model", "llama-3.1-8b", "--examples", "50000", "--network-gbps", "100", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["request"]["network_gbit_per_s_per_node"] == 100
    assert captured.err == ("sftplan: assumed: dataset.avg_tokens 512 tokens per example (the schema's default); "
                            "give the real mean, or the data file to measure it\n")
    assert main(["plan", *REQ, "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_network_flag_is_a_request_field_over_the_file(tmp_path, capsys):
    """--network-gbps is PlanRequest.network_gbit_per_s_per_node like every other request flag: it overrides the
    --request file, and a bad value is named by the flag or by the file's line."""
    import json

    req = tmp_path / "r.yaml"
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 50000, avg_tokens: 512}\nnetwork_gbit_per_s_per_node: 50\n")
    assert main(["plan", "--request", str(req), "--network-gbps", "100", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["request"]["network_gbit_per_s_per_node"] == 100
    assert main(["plan", "--request", str(req), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["request"]["network_gbit_per_s_per_node"] == 50
    req.write_text(req.read_text().replace("node: 50", "node: 0"))
    assert main(["plan", "--request", str(req)]) == 2
    assert _err(capsys) == f"sftplan: {req}:3: network_gbit_per_s_per_node: must be > 0, got 0\n"


def test_a_megatron_plan_warns_it_cannot_run_and_run_lists_each_strategy_once(tmp_path, capsys):
    from advisor.run_limits import ESTIMATED_ONLY
    from advisor.specs import STRATEGIES
    from executor.translate import SUPPORTED

    assert set(ESTIMATED_ONLY) == set(STRATEGIES) - set(SUPPORTED)
    path = tmp_path / "m.yaml"
    assert main(["plan", *REQ, "--method", "full-sft", "--strategy", "megatron", "-o", str(path), "--json"]) == 0
    assert capsys.readouterr().err.startswith("sftplan: warning: strategy 'megatron' is estimated only")
    assert "strategy 'megatron' is estimated only" in path.with_suffix(".md").read_text()
    assert main(["approve", str(path), "--by", "Ada"]) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "run")]) == 2
    err = _err(capsys)
    assert f"{path}: strategy 'megatron' is not supported" in err
    listed = err.split("supported: ")[1].rstrip(")\n").split(", ")
    assert len(listed) == len(set(listed)) == len(set(SUPPORTED))


def test_a_forced_full_sft_only_layout_gives_lora_no_configuration(tmp_path):
    """The rules pick LoRA and the request forces hsdp (full SFT only in the executor): no LoRA configuration
    fits (the tiers say why) instead of a LoRA + hsdp plan that `run` refuses; full SFT is priced beside it."""
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--model", "llama-3.1-8b", "--examples", "50000", "--avg-tokens", "1024", "--strategy", "hsdp",
                 "-o", str(out), "--json"]) == 0
    plan = read_plan(out)
    assert plan.method == "lora" and plan.recommended is None
    assert all("full-sft plans only" in (t.why_not or "") for t in plan.tiers)


def test_the_approve_hint_names_the_file_the_plan_was_written_to(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", *REQ, "-o", "sub/plan-b.yaml"]) == 0
    assert "sftplan approve sub/plan-b.yaml --by" in capsys.readouterr().out
    assert "`sftplan approve plan-b.yaml --by NAME`" in (tmp_path / "sub" / "plan-b.md").read_text()


def _inputs(tmp_path):
    """A training file with one e-mail address, a golden set, a request file and a model folder (config.json)."""
    import json

    rows = [{"prompt": f"question {i} about things", "response": f"answer {i} is fine"} for i in range(19)]
    rows.append({"prompt": "mail me", "response": "john.doe@example.com"})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "golden.jsonl").write_text("".join(json.dumps({"prompt": f"g{i}", "expected": f"e{i}"}) + "\n"
                                                   for i in range(5)))
    (tmp_path / "req.yaml").write_text("model: llama-3.1-8b\ndataset: {examples: 1000, avg_tokens: 256}\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": 512, "vocab_size": 1000, "max_position_embeddings": 2048}))
    return {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("argv, out, named", [
    (["--model", "llama-3.1-8b", "--dataset", "train.jsonl", "--no-data-check"], "train.jsonl", "--dataset"),
    (["--model", "llama-3.1-8b", "--dataset", "train.jsonl", "--golden", "golden.jsonl", "--pii", "accept"],
     "golden.jsonl", "--golden"),
    (["--request", "req.yaml"], "req.yaml", "--request"),
    (["--model", "model", "--examples", "1000"], "model/config.json", "inside --model"),
    (["--model", "model", "--examples", "1000"], "model/plan.yaml", "inside --model"),
    (["--model", "llama-3.1-8b", "--examples", "1000"], "notes.md", "review copy"),
])
def test_plan_output_never_replaces_what_the_plan_reads(tmp_path, capsys, monkeypatch, argv, out, named):
    monkeypatch.chdir(tmp_path)
    before = _inputs(tmp_path)
    assert main(["plan", *argv, "-o", out]) == 2
    assert named in _err(capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_pii_out_never_replaces_an_input_or_the_plan(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _inputs(tmp_path)
    redact = ["plan", "--model", "llama-3.1-8b", "--dataset", "train.jsonl", "--golden", "golden.jsonl", "--pii", "redact"]
    assert main([*redact, "--pii-out", "golden.jsonl", "-o", "p.yaml"]) == 2
    assert "--pii-out golden.jsonl: would write over --golden" in _err(capsys)
    assert main([*redact, "--pii-out", "p.yaml", "-o", "p.yaml"]) == 2
    assert "is where -o writes the plan" in _err(capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_folder_where_the_review_goes_is_refused_before_the_plan_is_written(tmp_path, capsys):
    (tmp_path / "p.md").mkdir()
    assert main(["plan", *REQ, "-o", str(tmp_path / "p.yaml")]) == 2
    assert "p.md: is a folder" in _err(capsys)
    assert not (tmp_path / "p.yaml").exists()


def test_a_request_task_named_as_a_suite_check_takes_its_place(capsys):
    """How HarmBench (no lm-eval task) gets a task of the user's, or a check another allowed drop: one check, not
    two of one name."""
    import json

    assert main(["plan", *REQ, "--deploy-task", "harmbench=my_harm:score,none:0.5", "--json"]) == 0
    suite = json.loads(capsys.readouterr().out)["evaluation"]["deploy_suite"]
    names = [c["name"] for c in suite]
    assert names == ["MMLU-Pro", "IFEval", "golden set", "harmbench", "bias audit"]
    assert suite[3]["task"] == "my_harm" and suite[3]["max_regression"] == 0.5


def test_a_mean_above_max_seq_len_is_said(capsys):
    import json

    assert main(["plan", "--model", "llama-3.1-8b", "--examples", "1000", "--avg-tokens", "4096", "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any(w.startswith("dataset.avg_tokens 4096 is above max_seq_len 2048: examples are cut to 2048 tokens")
               for w in warnings)


def test_pii_flags_that_could_not_act_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path)
    base = ["plan", "--model", "llama-3.1-8b", "--dataset", "train.jsonl"]
    assert main([*base, "--no-data-check", "--pii", "redact"]) == 2
    assert "--pii acts on the data check's PII findings, which --no-data-check skips" in _err(capsys)
    assert main([*base, "--pii-out", "x.jsonl"]) == 2
    assert "--pii-out names where --pii redact writes its copy" in _err(capsys)
    assert not (tmp_path / "x.jsonl").exists()



def test_files_a_request_names_are_measured_not_taken_from_the_yaml(tmp_path, capsys, monkeypatch):
    """A request's dataset.file counts / sha256 and golden sha256 are what `plan` measured once: written by hand
    they would price and approve data nobody read. They are measured again; a missing file and a hand-written
    data_check are refused on their field."""
    import hashlib
    import json

    monkeypatch.chdir(tmp_path)
    _inputs(tmp_path)
    req = tmp_path / "r.yaml"
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 5, avg_tokens: 3, file: {path: train.jsonl, sha256: abc, "
                   "rows: 5}}\ngolden: {path: golden.jsonl, sha256: abc, rows: 1}\n")
    assert main(["plan", "--request", str(req), "--pii", "accept", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["request"]
    assert got["dataset"]["examples"] == 20 and got["dataset"]["file"]["rows"] == 20
    assert got["dataset"]["file"]["sha256"] == hashlib.sha256((tmp_path / "train.jsonl").read_bytes()).hexdigest()
    assert got["golden"]["sha256"] == hashlib.sha256((tmp_path / "golden.jsonl").read_bytes()).hexdigest()
    assert got["data_check"]["rows"] == 20 and got["data_check"]["pii_hits"] >= 1
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 5, avg_tokens: 3}\ngolden: {path: nope.jsonl, "
                   "sha256: abc, rows: 3}\n")
    assert main(["plan", "--request", str(req)]) == 2
    assert "nope.jsonl: no such file" in _err(capsys)
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 5, avg_tokens: 3}\ndata_check: {rows: 5}\n")
    assert main(["plan", "--request", str(req)]) == 2
    assert "data_check: written by `sftplan plan` when it checks a data file" in _err(capsys)


def test_a_hand_written_exponent_is_a_number(tmp_path, capsys):
    """`learning_rate: 1e-5` (YAML 1.1 reads it as a string) is the number `--learning-rate 1e-5` gives; an
    exponent where an integer belongs is still refused on its line."""
    import json

    req = tmp_path / "r.yaml"
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 1000, avg_tokens: 500}\nmethod: full-sft\n"
                   "learning_rate: 1e-5\n")
    assert main(["plan", "--request", str(req), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["request"]["learning_rate"] == 1e-5
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 1000, avg_tokens: 500}\nepochs: 1e1\n")
    assert main(["plan", "--request", str(req)]) == 2
    assert _err(capsys) == f"sftplan: {req}:3: epochs: must be an integer, got 10.0\n"


@pytest.mark.parametrize("argv, want", [
    (["--goal", "fast-iteration", "--goal", "fast-iteration"], "sftplan: --goal: 'fast-iteration' is given twice"),
    (["--goal", "lora-below-bar", "--goal", "lora-cleared-bar"], "sftplan: --goal: 'lora-below-bar' and 'lora-cleared-bar'"),
])
def test_goals_given_twice_or_contradicting_are_refused(capsys, argv, want):
    assert main(["plan", *REQ, *argv]) == 2
    assert _err(capsys).startswith(want)


def test_estimate_says_when_run_would_not_run_it(capsys):
    """A what-if is still estimated; the note (stderr, and `runs` in --json) says what `plan` would refuse."""
    import json

    base = ["estimate", "--model", "8B", "--gpu", "h100-sxm", "--num-gpus", "8", "--seq-len", "4096"]
    assert main([*base, "--strategy", "zero3-sp", "--lora"]) == 0
    assert capsys.readouterr().err == ("sftplan: note: `sftplan run` would refuse it: 'zero3-sp' runs full-sft plans "
                                       "only; a LoRA plan runs on single, ddp, fsdp or zero3\n")
    assert main([*base, "--strategy", "megatron", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == "'megatron' is estimated only: `sftplan run` cannot run it"
    assert main([*base, "--strategy", "fsdp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] is None
