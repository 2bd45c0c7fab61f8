"""`sftplan plan/render/explain/diff/catalog/approve/verify` as a user runs them: exit codes and one-line errors."""

import json
import subprocess
import sys

import pytest
import yaml

from advisor.cli import main


def sftplan(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "advisor", *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_plan_approve_verify_edit_flow(tmp_path):
    plan_yaml = tmp_path / "plan.yaml"
    r = sftplan("plan", "--model", "llama-3.1-8b", "--examples", "50000", "--goal", "lora-below-bar", "--have", "h100-sxm:8",
                "-o", plan_yaml)
    assert r.returncode == 0, r.stderr
    assert plan_yaml.exists() and (tmp_path / "plan.md").exists()
    assert "Decision" in (tmp_path / "plan.md").read_text()

    r = sftplan("verify", plan_yaml)
    assert r.returncode == 1 and "not approved" in r.stderr and r.stderr.count("\n") == 1

    r = sftplan("approve", plan_yaml, "--by", "Ada")
    assert r.returncode == 0, r.stderr
    r = sftplan("verify", plan_yaml)
    assert r.returncode == 0 and "Ada" in r.stdout

    data = yaml.safe_load(plan_yaml.read_text())
    data["estimate"]["cost_usd"] += 0.01
    plan_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    r = sftplan("verify", plan_yaml)
    assert r.returncode == 1 and "edited after approval by Ada" in r.stderr and r.stderr.count("\n") == 1


def test_plan_json_is_the_plan(capsys):
    assert main(["plan", "--model", "llama-3.1-8b", "--examples", "5000", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "lora" and data["schema_version"] == 2 and len(data["plan_sha256"]) == 64
    for key in ("findings", "recommended", "estimate", "tiers", "hyperparameters", "checkpointing", "evaluation", "lora_alternative"):
        assert key in data


def test_render_explain_diff_catalog(tmp_path, capsys):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert main(["plan", "--model", "llama-3.1-8b", "--examples", "50000", "--goal", "deep-retask", "-o", str(a), "--json"]) == 0
    assert main(["plan", "--model", "llama-3.1-8b", "--examples", "50000", "--goal", "deep-retask", "--base", "instruct",
                 "-o", str(b), "--json"]) == 0
    capsys.readouterr()
    assert main(["render", str(a)]) == 0
    md = capsys.readouterr().out
    for heading in ("**Decision:**", "## GPU tiers", "## Hyperparameters", "## Checkpoints", "## Evaluation gate",
                    "## LoRA alternative", "## Warnings", "NOT APPROVED"):
        assert heading in md
    assert main(["explain", str(a)]) == 0
    assert "source:" in capsys.readouterr().out
    assert main(["diff", str(a), str(b)]) == 1  # differ, like diff(1)
    out = capsys.readouterr().out
    assert "hyperparameters.learning_rate" in out and "request.base" in out
    assert main(["diff", str(a), str(a)]) == 0
    assert "no differences" in capsys.readouterr().out
    assert main(["catalog"]) == 0
    assert "h100-sxm" in capsys.readouterr().out


def test_plan_from_request_yaml_and_dataset(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": "q" * 100, "response": "a" * 300}) for _ in range(200)) + "\n")
    golden = tmp_path / "golden.jsonl"
    golden.write_text(json.dumps({"prompt": "2+2", "expected": "4"}) + "\n")
    req = tmp_path / "request.yaml"
    req.write_text("model: llama-3.1-8b\ndataset: {examples: 1, avg_tokens: 1}\nmax_gpus: 8\n")
    assert main(["plan", "--request", str(req), "--dataset", str(data), "--golden", str(golden), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["request"]["dataset"]["examples"] == 200 and p["request"]["max_gpus"] == 8
    assert p["request"]["dataset"]["file"]["rows"] == 200 and p["evaluation"]["golden"]["rows"] == 1


@pytest.mark.parametrize("argv,needle", [
    (["plan", "--model", "no-such-model", "--examples", "100"], "no-such-model"),
    (["plan", "--model", "llama-3.1-8b", "--examples", "0"], "--examples"),
    (["plan", "--model", "llama-3.1-8b", "--examples", "100", "--have", "h100:8"], "h100"),
    (["plan", "--model", "llama-3.1-8b", "--examples", "100", "--have", "h100-sxm"], "--have"),
    (["plan", "--model", "llama-3.1-8b", "--examples", "100", "--gpu", "h100"], "h100"),
    (["plan", "--model", "llama-3.1-8b", "--examples", "100", "--budget-usd", "-5"], "--budget-usd"),
    (["plan", "--examples", "100"], "--model"),
    (["plan", "--model", "llama-3.1-8b"], "--dataset"),
    (["plan", "--model", "llama-3.1-8b", "--dataset", "/nonexistent.jsonl"], "no such file"),
    (["plan", "--model", "llama-3.1-8b", "--examples", "100", "--request", "/nonexistent.yaml"], "no such file"),
    (["render", "/nonexistent.yaml"], "no such file"),
    (["approve", "/nonexistent.yaml", "--by", "x"], "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sftplan: ") and err.count("\n") == 1 and needle in err, err


def test_argparse_errors_are_one_line_exit_2():
    r = sftplan("plan", "--model", "8B", "--examples", "lots")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_catalog_shows_every_price_source_at_80_columns():
    import subprocess
    import sys
    from pathlib import Path

    from advisor.catalog import load_catalog

    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "advisor", "catalog"], cwd=repo, capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "80"}).stdout
    flat = " ".join(out.split())
    for g in load_catalog().gpus.values():  # the price source is what the person who signs the bill checks
        assert " ".join(g.price_source.split()) in flat, g.id
