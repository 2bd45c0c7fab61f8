"""report.json's uncontended figures (what `sftplan calibrate` fits on the shared cpu tier): one torch thread,
the fastest tenth of the steps' CPU time; more threads, the fastest tenth of the steps' wall times."""

from test_report import plan_for_report, write_run

from executor.report import build_report


def _rows(threads: int, wall: list[float], cpu: list[float], tokens_per_step: float = 1000.0) -> list[dict]:
    return [{"epoch": 0.1, "step": i + 1, "loss": 1.0, "learning_rate": 1e-5, "tokens_per_s_per_gpu": tokens_per_step / w,
             "step_time_s": w, "cpu_time_s": c, "torch_threads": threads, "peak_memory_bytes": 2**30, "elapsed_s": float(i)}
            for i, (w, c) in enumerate(zip(wall, cpu))]


def test_one_thread_reads_the_cpu_time_whatever_the_neighbours_did(tmp_path):
    wall = [9.0, 0.30, 0.12, 0.95, 0.41, 0.22, 0.60, 0.15, 0.33]  # contended: 1.2-8x the work
    cpu = [5.0, 0.101, 0.099, 0.100, 0.102, 0.098, 0.100, 0.101, 0.099]
    write_run(tmp_path, _rows(1, wall, cpu), {"plan_sha256": "x", "status": "finished", "device": "cpu"})
    f = build_report(tmp_path, plan_for_report())["figures"]
    # the fastest 3 CPU times (0.098, 0.099, 0.099; the warm-up step left out), whatever the wall clock said
    assert abs(f["step_time_s"]["measured_uncontended"] - 0.099) < 1e-9
    assert abs(f["tokens_per_s_per_gpu"]["measured_uncontended"] - 1000 / 0.099) < 1e-6  # 1000 tokens per 0.099 s
    assert f["step_time_s"]["measured"] == 0.315  # the wall-clock median stays what it was
    assert "CPU time" in f["step_time_s"]["how_uncontended"]


def test_more_threads_read_the_fastest_tenth_of_the_wall_times(tmp_path):
    wall = [9.0] + [0.2 + 0.01 * i for i in range(40)]
    write_run(tmp_path, _rows(2, wall, [2 * w for w in wall]), {"plan_sha256": "x", "status": "finished"})
    f = build_report(tmp_path, plan_for_report())["figures"]
    rate = (1000 / 0.21 + 1000 / 0.22) / 2  # the fastest 4 of 40 (0.20-0.23 s): their median tokens/s
    assert abs(f["tokens_per_s_per_gpu"]["measured_uncontended"] - rate) < 1e-6
    assert abs(f["step_time_s"]["measured_uncontended"] - 1000 / rate) < 1e-9
    assert "fastest 10%" in f["step_time_s"]["how_uncontended"] and "wall time" in f["step_time_s"]["how_uncontended"]


def test_the_fastest_steps_are_chosen_by_rate_not_by_their_length(tmp_path):
    # steps alternate 500 and 1500 tokens at the same uncontended rate (10,000 tokens per CPU second): the
    # shortest steps by time are the 500-token ones, which must not make the step look short
    tokens = [1000.0] + [500.0 if i % 2 else 1500.0 for i in range(30)]
    cpu = [n / 10_000 for n in tokens]
    rows = [dict(r, tokens_per_s_per_gpu=n / (2 * c), step_time_s=2 * c) for r, n, c in
            zip(_rows(1, [2 * c for c in cpu], cpu), tokens, cpu)]
    write_run(tmp_path, rows, {"plan_sha256": "x", "status": "finished"})
    f = build_report(tmp_path, plan_for_report())["figures"]
    assert abs(f["tokens_per_s_per_gpu"]["measured_uncontended"] - 10_000) < 1e-6
    assert abs(f["step_time_s"]["measured_uncontended"] - 0.1) < 1e-9  # the median step: 1000 tokens
