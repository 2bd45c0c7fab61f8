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
    assert f["step_time_s"]["measured_uncontended"] == 0.099
    assert abs(f["tokens_per_s_per_gpu"]["measured_uncontended"] - 1000 / 0.099) < 1  # 1000 tokens per 0.099 s
    assert f["step_time_s"]["measured"] == 0.315  # the wall-clock median stays what it was
    assert "CPU time" in f["step_time_s"]["how_uncontended"]


def test_more_threads_read_the_fastest_tenth_of_the_wall_times(tmp_path):
    wall = [9.0] + [0.2 + 0.01 * i for i in range(40)]
    write_run(tmp_path, _rows(2, wall, [2 * w for w in wall]), {"plan_sha256": "x", "status": "finished"})
    f = build_report(tmp_path, plan_for_report())["figures"]
    assert abs(f["step_time_s"]["measured_uncontended"] - 0.215) < 1e-9  # the fastest 4 of 40: 0.20-0.23
    assert abs(f["tokens_per_s_per_gpu"]["measured_uncontended"] - 1000 / 0.215) < 5
    assert "fastest 10%" in f["step_time_s"]["how_uncontended"]
