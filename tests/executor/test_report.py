"""report.md / report.json: the plan's estimates beside medians of what metrics.jsonl measured, and cost so far."""

import json
from datetime import datetime, timezone

from advisor.models import (
    Checkpointing, DatasetSpec, Evaluation, Hyperparameters, LoraAlternative, ModelSummary, Plan, PlanEstimate,
    PlanRequest, Recommended, TierRow,
)
from advisor.planfile import with_hash
from executor.report import build_report, gpu_price, write_report


def plan_for_report() -> Plan:
    rec = Recommended(gpu="h100-sxm", num_gpus=8, num_nodes=1, strategy="fsdp", micro_batch_size=2, grad_accum=8,
                      activation_checkpointing=True)
    return with_hash(Plan(
        request=PlanRequest(model="llama-3.1-8b", dataset=DatasetSpec(examples=50_000, avg_tokens=512)),
        model=ModelSummary(name="llama-3.1-8b", family="llama", source="preset", params=8_000_000_000,
                           active_params=8_000_000_000),
        method="full-sft", findings=[], recommended=rec,
        estimate=PlanEstimate(memory_per_gpu_gib=50.0, memory_breakdown_gib={}, cpu_memory_per_node_gib=0.0, hours=10.0,
                              cost_usd=240.0, tokens_total=1, tokens_per_s_per_gpu=4000.0, step_time_s=2.0, mfu=0.4,
                              steps_per_epoch=100, total_steps=300),
        tiers=[TierRow(gpu="h100-sxm", fits=True, usd_per_gpu_hour=3.0)],
        hyperparameters=Hyperparameters(learning_rate=1e-5, warmup_ratio=0.03, weight_decay=0.1, epochs=3,
                                        max_seq_len=2048, global_batch_size=128, global_batch_tokens=262_144),
        checkpointing=Checkpointing(disk_gib_per_checkpoint=100.0, disk_gib=300.0),
        evaluation=Evaluation(tolerance=0.02), lora_alternative=LoraAlternative(),
    ))


def write_run(tmp_path, rows, run):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut by a kill')
    (tmp_path / "run.json").write_text(json.dumps(run))


def test_report_medians_ratios_and_cost(tmp_path):
    rows = [{"epoch": 0.1, "step": s, "loss": 1.0, "learning_rate": 1e-5, "tokens_per_s_per_gpu": tps,
             "step_time_s": st, "peak_memory_bytes": mem, "elapsed_s": 10.0 * s}
            for s, tps, st, mem in [(1, 100.0, 50.0, 10 * 2**30), (2, 3000.0, 2.5, 40 * 2**30),
                                    (3, 3200.0, 2.4, 45 * 2**30), (4, 3100.0, 2.6, 44 * 2**30),
                                    (5, 2900.0, 2.7, 42 * 2**30)]]
    write_run(tmp_path, rows, {"plan_sha256": "x", "status": "finished", "started_at": "2026-01-01T00:00:00Z",
                               "finished_at": "2026-01-01T02:00:00Z", "device": "cuda"})
    plan = plan_for_report()
    report = write_report(tmp_path, plan)
    f = report["figures"]
    assert f["tokens_per_s_per_gpu"]["measured"] == 3050.0  # median of steps 2-5 (step 1 is warm-up)
    assert abs(f["tokens_per_s_per_gpu"]["ratio"] - 3050 / 4000) < 1e-12
    assert f["step_time_s"]["measured"] == 2.55
    assert f["peak_memory_per_gpu_gib"]["measured"] == 45.0
    assert f["peak_memory_per_gpu_gib"]["how"] == "accelerator max allocated"
    assert f["hours"]["measured"] == 2.0
    price, _ = gpu_price(plan)
    assert abs(f["cost_usd"]["measured"] - 2.0 * 8 * price) < 1e-9
    assert report["steps_logged"] == 5 and report["last_step"] == 5
    assert json.loads((tmp_path / "report.json").read_text()) == report
    md = (tmp_path / "report.md").read_text()
    assert "| tokens/s per GPU | 4,000 tokens/s | 3,050 tokens/s | 0.76 |" in md
    assert "peak memory per GPU" in md and "$240.00" in md


def test_report_on_cpu_while_running_and_with_no_metrics(tmp_path):
    write_run(tmp_path, [], {"plan_sha256": "x", "status": "running", "started_at": "2026-01-01T00:00:00Z",
                             "device": "cpu", "allow_mismatch": True})
    report = build_report(tmp_path, plan_for_report(), now=datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc))
    assert report["figures"]["hours"]["measured"] == 0.5
    assert report["figures"]["tokens_per_s_per_gpu"]["measured"] is None
    assert report["peak_memory_kind"] == "process RSS"
    write_report(tmp_path, plan_for_report())
    assert "allow-mismatch" in (tmp_path / "report.md").read_text()


def test_report_elapsed_from_metrics_when_no_run_json(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "elapsed_s": 1800.0, "peak_memory_bytes": 2**30,
                                                        "peak_memory_kind": "process RSS"}) + "\n")
    report = build_report(tmp_path, plan_for_report())
    assert report["figures"]["hours"]["measured"] == 0.5
    assert report["figures"]["peak_memory_per_gpu_gib"]["how"] == "process RSS"


def test_elapsed_hours_leave_the_downtime_before_a_resume_out(tmp_path):
    attempts = [{"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T01:00:00Z"},  # killed at 01:00
                {"started_at": "2026-01-01T05:00:00Z", "finished_at": "2026-01-01T05:30:00Z"}]  # resumed at 05:00
    write_run(tmp_path, [], {"plan_sha256": "x", "status": "finished", "started_at": "2026-01-01T00:00:00Z",
                             "finished_at": "2026-01-01T05:30:00Z", "attempts": attempts})
    hours = build_report(tmp_path, plan_for_report())["figures"]["hours"]
    assert hours["measured"] == 1.5
    assert "2 launches" in hours["how"]


def test_an_attempt_killed_without_a_finish_time_ends_at_its_last_sign_of_life(tmp_path):
    import os

    from executor.run import _attempts

    (tmp_path / "log.txt").write_text("training...\n")
    t = datetime(2026, 1, 1, 0, 40, tzinfo=timezone.utc).timestamp()
    os.utime(tmp_path / "log.txt", (t, t))
    out = _attempts(tmp_path, {"attempts": [{"started_at": "2026-01-01T00:00:00Z", "finished_at": None}]})
    assert out[0] == {"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:40:00Z"}
    assert len(out) == 2 and out[1]["finished_at"] is None
