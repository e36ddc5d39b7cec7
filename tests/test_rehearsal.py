"""bench/rehearsal.py: the fit of fixed + per-record costs, and the corpus generator on a tiny plan."""

import csv
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import rehearsal  # noqa: E402


def test_fit_line_separates_fixed_and_per_record_costs():
    x = [355, 3_000, 14_000]
    fit = rehearsal.fit_line(x, [30 + 0.002 * n for n in x])
    assert fit["fixed"] == pytest.approx(30)
    assert fit["slope"] == pytest.approx(0.002)
    assert fit["r2"] == pytest.approx(1)


def test_fit_line_single_size_is_the_linear_upper_bound():
    fit = rehearsal.fit_line([100, 100], [10.0, 12.0])
    assert fit["fixed"] == 0 and fit["slope"] == pytest.approx(0.11) and fit["method"].startswith("single")


def _run(records, epochs=10, **stage_figures):
    stages = {s: {"seconds": t, "peak_rss_mib": m} for s, (t, m) in stage_figures.items()}
    return {"epochs": epochs, "records": {"total": records}, "stages": stages}


def test_fit_runs_extrapolates_each_stage_and_memory():
    runs = {
        "small": _run(1_000, build_records_beam=(60 + 0.2 * 1_000, 2_600), export=(49, 1_750)),
        "big": _run(10_000, build_records_beam=(60 + 0.2 * 10_000, 2_600), export=(51, 1_750)),
        "other_epochs": _run(5_000, epochs=1, train_fc8=(1.0, 1.0)),
    }
    for stage in rehearsal.DOCUMENTED_STAGES:
        if stage not in rehearsal.BUILD_STAGES + ("export",):
            runs["small"]["stages"][stage] = {"seconds": 1.0, "peak_rss_mib": 100 + 0.1 * 1_000}
            runs["big"]["stages"][stage] = {"seconds": 1.0, "peak_rss_mib": 100 + 0.1 * 10_000}
    fit = rehearsal.fit_runs(runs, epochs=10, target=100_000)
    build = fit["stages"]["build_records_beam"]
    assert [i["run"] for i in build["inputs"]] == ["small", "big"]
    assert [i["run"] for i in fit["stages"]["train_fc8"]["inputs"]] == ["small", "big"]  # not the epochs=1 run
    assert build["fixed_seconds"] == pytest.approx(60)
    assert build["extrapolated_seconds_100000_records"] == pytest.approx(60 + 0.2 * 100_000)
    assert build["memory"]["growth"].startswith("flat")
    export = fit["stages"]["export"]
    assert export["fixed_seconds"] == pytest.approx(48.78, abs=0.01)  # 49 - 1000 * (2 / 9000)
    assert fit["stages"]["fc7_cache"]["memory"]["extrapolated_peak_mib"] == pytest.approx(100 + 0.1 * 100_000)
    assert fit["stages"]["fc7_cache"]["memory"]["growth"] == "growing"
    assert fit["total_build_stage"] == "build_records_beam"
    others = sum(
        f["extrapolated_seconds_100000_records"] for s, f in fit["stages"].items() if s not in rehearsal.BUILD_STAGES
    )
    assert fit["extrapolated_total_seconds_100000_records"] == pytest.approx(others + 60 + 0.2 * 100_000)
    # With a plain build measured too, the total takes it (one build, never both).
    runs["small"]["stages"]["build_records_plain"] = {"seconds": 10 + 0.1 * 1_000, "peak_rss_mib": 3_000}
    runs["big"]["stages"]["build_records_plain"] = {"seconds": 10 + 0.1 * 10_000, "peak_rss_mib": 3_000}
    both = rehearsal.fit_runs(runs, epochs=10, target=100_000)
    assert both["total_build_stage"] == "build_records_plain"
    assert both["extrapolated_total_seconds_100000_records"] == pytest.approx(others + 10 + 0.1 * 100_000)


def test_generated_clips_have_their_planned_frames(tmp_path):
    from emonet_tf.video import count_frames

    plan = rehearsal.clip_plan(6, 0.02, seed=3)
    info = rehearsal.generate_corpus(str(tmp_path), plan, seed=3, workers=2, verify=0)
    assert not info["reused"] and info["masters"] == len(rehearsal.masters_of(plan))
    for spec in plan:
        assert count_frames(tmp_path / "clips" / spec["name"]) == spec["frames"]
    with open(tmp_path / "clips" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["video"], r["label"], r["split"]) for r in rows] == [(s["name"], s["label"], s["split"]) for s in plan]
    assert rehearsal.generate_corpus(str(tmp_path), plan, seed=3, workers=2)["reused"]


def test_plan_key_changes_with_the_plan():
    a, b = rehearsal.clip_plan(6, 0.02), rehearsal.clip_plan(6, 0.03)
    assert rehearsal.plan_key(a, 0) == rehearsal.plan_key(rehearsal.clip_plan(6, 0.02), 0) != rehearsal.plan_key(b, 0)


def test_fit_runs_without_measurable_growth_keeps_the_runs_mean():
    runs = {
        "a": _run(1_000, setup=(3.0, 1_800)),
        "b": _run(4_000, setup=(2.0, 1_750)),
    }
    setup = rehearsal.fit_runs(runs, epochs=10, target=100_000)["stages"]["setup"]
    assert setup["seconds_per_record"] < 0
    assert setup["extrapolated_seconds_100000_records"] == pytest.approx(2.5)
    assert setup["memory"]["extrapolated_peak_mib"] == 1_800 and setup["memory"]["growth"].startswith("flat")
