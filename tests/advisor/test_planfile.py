"""Plan files: round-trip, byte-identical determinism, approve/verify, one edited number detected, diff."""

from datetime import datetime, timezone

import pytest
import yaml

from advisor.errors import UserError
from advisor.models import (
    Checkpointing, DatasetSpec, Evaluation, Finding, Hyperparameters, LoraAlternative, ModelSummary, Plan, PlanEstimate,
    PlanRequest, Recommended, TierRow,
)
from advisor.planfile import approve, compute_sha256, diff, read_plan, verify, with_hash, write_plan


def hand_plan(cost: float = 1234.5, method: str = "full-sft") -> Plan:
    rec = Recommended(gpu="h100-sxm", num_gpus=8, num_nodes=1, strategy="fsdp", micro_batch_size=2, grad_accum=8,
                      activation_checkpointing=True)
    return with_hash(Plan(
        request=PlanRequest(model="llama-3.1-8b", dataset=DatasetSpec(examples=50_000, avg_tokens=512)),
        model=ModelSummary(name="llama-3.1-8b", family="llama", source="preset", params=8_030_261_248, active_params=8_030_261_248),
        method=method,
        findings=[Finding(rule_id="method.full-sft-reason", verdict="full-sft", why="goal lora-below-bar", source="guide")],
        recommended=rec,
        estimate=PlanEstimate(memory_per_gpu_gib=51.2, memory_breakdown_gib={"weights": 1.9}, cpu_memory_per_node_gib=0.0,
                              hours=12.25, cost_usd=cost, tokens_total=76_800_000, tokens_per_s_per_gpu=3500.0,
                              step_time_s=9.5, mfu=0.41, steps_per_epoch=391, total_steps=1173),
        tiers=[TierRow(gpu="h100-sxm", fits=True, config=rec, memory_per_gpu_gib=51.2, hours=12.25, cost_usd=cost,
                       usd_per_gpu_hour=3.0, meets_constraints=True),
               TierRow(gpu="a10g", fits=False, usd_per_gpu_hour=1.0, why_not="needs 30 GiB per GPU")],
        hyperparameters=Hyperparameters(learning_rate=2e-6, warmup_ratio=0.03, weight_decay=0.1, epochs=3, max_seq_len=2048,
                                        global_batch_size=128, global_batch_tokens=65_536),
        checkpointing=Checkpointing(disk_gib_per_checkpoint=104.6, disk_gib=313.8),
        evaluation=Evaluation(tolerance=0.02),
        lora_alternative=LoraAlternative(gpu="h100-sxm", num_gpus=1, strategy="single", hours=20.0, cost_usd=60.0),
    ))


def test_round_trip_is_identical(tmp_path):
    p = hand_plan()
    write_plan(p, tmp_path / "plan.yaml")
    back = read_plan(tmp_path / "plan.yaml")
    assert back == p and back.plan_sha256 == compute_sha256(back)


def test_writing_twice_is_byte_identical(tmp_path):
    write_plan(hand_plan(), tmp_path / "a.yaml")
    write_plan(hand_plan(), tmp_path / "b.yaml")
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()


def test_plan_file_has_the_required_keys(tmp_path):
    write_plan(hand_plan(), tmp_path / "plan.yaml")
    data = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    for key in ("schema_version", "request", "method", "findings", "recommended", "estimate", "tiers", "hyperparameters",
                "checkpointing", "evaluation", "lora_alternative", "plan_sha256"):
        assert key in data
    for key in ("gpu", "num_gpus", "num_nodes", "strategy", "micro_batch_size", "grad_accum", "activation_checkpointing"):
        assert key in data["recommended"]


def test_approve_then_verify(tmp_path):
    p = approve(hand_plan(), "Ada", at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert p.approval.by == "Ada" and p.approval.at == "2026-01-02T03:04:05Z"
    write_plan(p, tmp_path / "plan.yaml")
    assert verify(read_plan(tmp_path / "plan.yaml")) == ""


def test_unapproved_plan_does_not_verify():
    assert "not approved" in verify(hand_plan())


@pytest.mark.parametrize("old,new", [("cost_usd: 1234.5", "cost_usd: 1234.6"), ("num_gpus: 8", "num_gpus: 4"),
                                     ("learning_rate: 2.0e-06", "learning_rate: 2.0e-05")])
def test_editing_one_number_after_approval_is_caught(tmp_path, old, new):
    path = tmp_path / "plan.yaml"
    write_plan(approve(hand_plan(), "Ada"), path)
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new, 1))
    problem = verify(read_plan(path))
    assert "edited after approval by Ada" in problem


def test_approve_refuses_a_plan_edited_before_approval():
    p = hand_plan().replace(**{"method": "lora"})
    with pytest.raises(UserError, match="edited"):
        approve(p, "Ada")
    with pytest.raises(UserError):
        approve(hand_plan(), "  ")


def test_diff_puts_decisions_first_and_ignores_the_stamp():
    a, b = hand_plan(), hand_plan(cost=2000.0, method="lora")
    changes = diff(a, b)
    paths = [c[0] for c in changes]
    assert paths[0] == "method"
    assert ("estimate.cost_usd", 1234.5, 2000.0) in changes
    assert "tiers[h100-sxm].cost_usd" in paths
    assert diff(a, approve(a, "Ada")) == []


def test_read_plan_rejects_bad_files_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: full-sft\n")
    with pytest.raises(UserError) as e:
        read_plan(bad)
    assert "\n" not in str(e.value)
    bad.write_text("{{{{")
    with pytest.raises(UserError):
        read_plan(bad)
    with pytest.raises(UserError, match="no such file"):
        read_plan(tmp_path / "missing.yaml")


def test_a_plan_approved_before_overhead_hours_existed_still_verifies(tmp_path):
    old = approve(hand_plan(), "Ada", at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    path = tmp_path / "plan.yaml"
    write_plan(old, path)
    text = path.read_text()
    assert "overhead_hours: 0.0\n" in text
    path.write_text(text.replace("  overhead_hours: 0.0\n", ""))  # what a file from before the field looks like
    assert verify(read_plan(path)) == ""
    edited = old.replace(**{"estimate": old.estimate.replace(**{"overhead_hours": 0.2})})
    assert "edited" in verify(edited)  # once set, the field is hashed like any other


def _strip_deploy_fields_of_2(data: dict) -> None:
    """A version-1 file has none of the deploy-suite fields version 2 added."""
    for key in ("deploy_tasks", "deploy_include_path", "deploy_limit"):
        data["request"].pop(key, None)
    for key in ("deploy", "deploy_hours", "deploy_cost_usd"):
        data["evaluation"].pop(key, None)
    for check in data["evaluation"]["deploy_suite"]:
        for key in ("task", "metric", "higher_is_better"):
            check.pop(key, None)


def _version_1_file(tmp_path, by: str = "Ada"):
    """A plan file as schema 1 wrote it: without the keys added since (planfile's list), its hash taken over what
    the file holds, an approval without a stamp hash."""
    import hashlib
    import json

    from advisor.planfile import _ADDED_WITHIN_2, _drop_at_default, _version_1_content

    content = _version_1_content({k: v for k, v in hand_plan().to_dict().items() if k not in ("plan_sha256", "approval")})
    _drop_at_default(content, _ADDED_WITHIN_2)
    content["schema_version"] = 1
    assert "binding_constraint" not in content["tiers"][0] and "memory_headroom" not in content["request"]
    h = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    data = {**content, "plan_sha256": h, "approval": {"by": by, "at": "2026-01-02T03:04:05Z", "plan_sha256": h}}
    path = tmp_path / "v1.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_version_1_approval_still_verifies_by_its_own_rule(tmp_path):
    from advisor.planfile import approval_note

    old = read_plan(_version_1_file(tmp_path))
    assert old.schema_version == 1 and verify(old) == ""
    assert "not covered" in approval_note(old)
    edited = old.replace(**{"hyperparameters": old.hyperparameters.replace(**{"epochs": 1})})
    assert "edited" in verify(edited)
    again = approve(old, "Grace")  # re-approving writes schema 2, with the stamp hashed
    assert again.schema_version == 2 and verify(again) == "" and approval_note(again) == ""


def test_rewriting_the_approver_or_the_time_fails_verify(tmp_path):
    p = approve(hand_plan(), "Ada", at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    path = tmp_path / "plan.yaml"
    write_plan(p, path)
    assert verify(read_plan(path)) == ""
    text = path.read_text()
    for old, new in (("by: Ada", "by: Mallory"), ("at: '2026-01-02T03:04:05Z'", "at: '2027-01-02T03:04:05Z'")):
        assert old in text
        path.write_text(text.replace(old, new))
        assert "approval stamp was edited" in verify(read_plan(path))
    no_stamp = p.replace(**{"approval": p.approval.replace(**{"stamp_sha256": None})})
    assert "approval stamp" in verify(no_stamp)


def test_base_model_files_are_in_the_approval(tmp_path):
    """plan --model DIR records the sha256 of the model's files in the request, hashed with the plan: a swapped
    weight file is a different plan."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 320, "max_position_embeddings": 512}))
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "chat_template.jinja").write_text("{{ messages }}")
    out = tmp_path / "plan.yaml"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "advisor", "plan", "--model", str(model), "--examples", "1000",
                           "--avg-tokens", "100", "-o", str(out)], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr
    plan = read_plan(out)
    files = plan.request.model_files
    assert files.source == "local" and set(files.sha256) == {"config.json", "model.safetensors", "chat_template.jinja"}
    swapped = plan.replace(**{"request": plan.request.replace(**{
        "model_files": files.replace(**{"sha256": {**files.sha256, "model.safetensors": "0" * 64}})})})
    assert compute_sha256(swapped) != compute_sha256(plan)


def _committed_plans() -> list:
    """Every plan file committed under tests/ (a YAML with a top-level plan_sha256)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return sorted(p for p in root.rglob("*.yaml") if any(line.startswith("plan_sha256:") for line in
                                                          p.read_text(encoding="utf-8").splitlines()))


def test_committed_plan_fixtures_hash_to_their_own_sha():
    """The TUI's snapshot plans (and any other plan fixture) still verify their content with today's code: a
    change to the canonical serialisation, or a new field not in planfile._ADDED_WITHIN_2, fails here."""
    plans = _committed_plans()
    assert any(p.name == "snapshot_plan.yaml" for p in plans) and len(plans) >= 2
    for path in plans:
        plan = read_plan(path)
        assert plan.plan_sha256 == compute_sha256(plan), f"{path}: plan_sha256 no longer matches its content"


def test_write_plan_files_refuses_a_file_or_folder_the_plan_reads(tmp_path):
    """The one writer (plan -o, approve, the TUI's save) never replaces the plan's data, golden set or model."""
    from advisor.catalog import load_catalog
    from advisor.models import DatasetSpec, PlanRequest
    from advisor.planfile import write_plan_files
    from advisor.planner import plan as make_plan
    from advisor.request import data_file

    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"prompt": "2+2=", "expected": "4"}\n')
    model = tmp_path / "model"
    model.mkdir()
    p = make_plan(PlanRequest(model="llama-3.2-1b", dataset=DatasetSpec(examples=2000, avg_tokens=256),
                              golden=data_file(str(golden))), load_catalog())
    p = p.replace(request=p.request.replace(model_path=str(model)))
    for target, says in ((golden, "would write over golden"), (golden.with_suffix(".yaml"), None),
                         (model / "plan.yaml", "is inside model_path"), (tmp_path / "golden.md.yaml", None)):
        if says is None:
            write_plan_files(p, target)
            continue
        with pytest.raises(UserError, match=says):
            write_plan_files(p, target)
    assert golden.read_text() == '{"prompt": "2+2=", "expected": "4"}\n' and not list(model.iterdir())


def test_approving_through_a_symlink_approves_the_plan_it_names(tmp_path):
    from advisor.catalog import load_catalog
    from advisor.models import DatasetSpec, PlanRequest
    from advisor.planfile import write_plan_files
    from advisor.planner import plan as make_plan

    target = tmp_path / "plans" / "v3.yaml"
    target.parent.mkdir()
    write_plan_files(make_plan(PlanRequest(model="llama-3.2-1b", dataset=DatasetSpec(examples=2000, avg_tokens=256)),
                               load_catalog()), target)
    link = tmp_path / "plan.yaml"
    link.symlink_to(target)
    write_plan_files(approve(read_plan(link), "Bo"), link)
    assert link.is_symlink() and verify(read_plan(target)) == "" and (target.parent / "v3.md").is_file()
    assert not (tmp_path / "plan.md").exists()
