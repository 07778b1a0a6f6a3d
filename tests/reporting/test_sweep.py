"""Loading run directories, detecting swept axes and aggregating seeds (synthetic results files)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from dptrain.errors import DataError
from dptrain.reporting.sweep import (
    SweepRun,
    detect_axes,
    estimate,
    find_run_dirs,
    load_sweep,
    summarize_sweep,
)
from dptrain.reporting.sweep_markdown import format_estimate

# t quantile for 95 % and 2 degrees of freedom (three seeds), from a printed t table.
T_975_DF2 = 4.302653
T_975_DF1 = 12.706205


def write_fake_run(
    run_dir: Path,
    *,
    epsilon: float,
    seed: int,
    auroc: float,
    hidden: tuple[int, ...] = (64, 64),
    audit: bool = True,
    patient_auc: tuple[float, ...] = (0.5, 0.6, 0.7, 0.95),
) -> Path:
    """A run directory as `dptrain` leaves it: results.json (summary + config), patient_risk.csv."""
    run_dir.mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    eps = "inf" if math.isinf(epsilon) else epsilon
    summary: dict = {
        "run/seed": seed,
        "privacy/private": math.isfinite(epsilon),
        "privacy/unit": "patient",
        "privacy/epsilon": eps,
        "privacy/delta": 1e-5,
        "utility/auroc": auroc,
        "utility/accuracy": auroc - 0.1,
    }
    if audit:
        summary |= {
            "audit/best_attack_auc": 0.5 + auroc / 10,
            "audit/best_attack_tpr_at_fpr_0.001": 0.002,
            "audit/epsilon_lower_bound": 0.1 * seed,
            "audit/dp_max_auc_patient": 1.0 if math.isinf(epsilon) else 0.6,
            "audit/patient_auc_median": float(np.median(patient_auc)),
            "audit/patient_auc_p99": max(patient_auc),
            "audit/patient_auc_max": max(patient_auc),
            "audit/null_patient_auc_p99": 0.7,
            "audit/patients_auc_above_0.9": 3.0,
            "subgroup/sex=F/share_above_0.9": 0.25,
            "subgroup/sex=M/share_above_0.9": 0.5,
        }
        rows = "\n".join(f"P{i},F,1,{auc}" for i, auc in enumerate(patient_auc))
        (run_dir / "patient_risk.csv").write_text(f"patient_id,sex,n_records,auc\n{rows}\n")
    results = {
        "schema_version": "1.3",
        "status": "complete",
        "summary": summary,
        "config": {
            "seed": seed,
            "name": f"visits-{seed}",
            "data": {"path": f"/data/copy{seed}/visits.csv", "name": "visits"},
            "model": {"hidden": list(hidden), "activation": "tanh"},
            "privacy": {"mode": "dp", "epsilon": eps, "delta": None},
            "train": {"epochs": 2, "threads": seed},
            "tracker": {"dir": f"/tmp/wandb{seed}"},
            "audit": {"workers": seed + 1, "num_models": 4},
        },
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def make_run(config: dict, summary: dict) -> SweepRun:
    return SweepRun(run_dir=Path(f"/runs/{len(config)}"), config=config, summary=summary)


def test_estimate_is_the_mean_with_a_student_t_interval():
    result = estimate([0.70, 0.74, 0.78])
    half = T_975_DF2 * 0.04 / math.sqrt(3)  # sd of (0.70, 0.74, 0.78) is 0.04
    assert result.n == 3
    assert result.mean == pytest.approx(0.74)
    assert result.low == pytest.approx(0.74 - half, abs=1e-6)
    assert result.high == pytest.approx(0.74 + half, abs=1e-6)


def test_estimate_leaves_out_undefined_values_and_one_seed_has_no_interval():
    result = estimate([None, 0.6, float("nan")])
    assert (result.mean, result.n) == (0.6, 1)
    assert math.isnan(result.low) and math.isnan(result.high)
    assert format_estimate(result) == "0.600 (1 seed)"
    assert estimate([None]).n == 0 and format_estimate(estimate([None])) == "–"


def test_estimate_of_the_baseline_epsilon_is_infinite_without_nan():
    result = estimate([math.inf, math.inf])
    assert result.mean == result.low == result.high == math.inf
    assert format_estimate(result) == "∞"


def test_interval_is_cut_to_the_unit_range_for_aucs_only():
    auc = estimate([0.9, 1.0], bounds=(0.0, 1.0))
    unbounded = estimate([0.9, 1.0])
    assert unbounded.high == pytest.approx(0.95 + T_975_DF1 * 0.05, abs=1e-5)  # 1.585
    assert auc.high == 1.0 and auc.low == pytest.approx(unbounded.low)


def test_axes_ignore_seed_names_paths_and_execution_settings():
    runs = [
        make_run(
            {
                "seed": seed,
                "name": f"n{seed}",
                "data.path": f"/d{seed}",
                "tracker.dir": f"/t{seed}",
                "audit.workers": seed,
                "audit.submitit_folder": f"/s{seed}",
                "privacy.epsilon": epsilon,
                "model.hidden": (64, 64),
                "train.lr": lr,
            },
            {"run/seed": seed},
        )
        for seed, epsilon, lr in [(0, 1.0, 0.1), (1, 8.0, 0.1), (0, math.inf, 0.01)]
    ]
    axes = detect_axes(runs)
    assert [axis.key for axis in axes] == ["privacy.epsilon", "train.lr"]
    assert axes[0].values == (1.0, 8.0, math.inf) and axes[0].numeric
    assert axes[1].values == (0.01, 0.1)


def test_categorical_axis_keeps_the_order_of_appearance():
    runs = [
        make_run({"model.hidden": hidden, "seed": 0}, {})
        for hidden in [(256, 256), (16, 16), (64,)]
    ]
    (axis,) = detect_axes(runs)
    assert axis.values == ((256, 256), (16, 16), (64,)) and not axis.numeric


def test_groups_aggregate_seeds_and_put_infinite_epsilon_last(tmp_path):
    aurocs = {(math.inf, 0): 0.80, (math.inf, 1): 0.84, (8.0, 0): 0.76, (8.0, 1): 0.72}
    aurocs |= {(1.0, 0): 0.60, (1.0, 1): 0.64, (1.0, 2): 0.68}
    for index, ((epsilon, seed), auroc) in enumerate(aurocs.items()):
        write_fake_run(tmp_path / str(index), epsilon=epsilon, seed=seed, auroc=auroc)
    sweep = load_sweep([tmp_path])
    assert [axis.key for axis in sweep.axes] == ["privacy.epsilon"]
    assert [group.axis_values["privacy.epsilon"] for group in sweep.groups] == [1.0, 8.0, math.inf]
    assert [group.seeds for group in sweep.groups] == [(0, 1, 2), (0, 1), (0, 1)]
    low_epsilon, _, baseline = sweep.groups
    auroc = low_epsilon.metric("utility/auroc")
    assert auroc.mean == pytest.approx(0.64)
    assert auroc.high - auroc.mean == pytest.approx(T_975_DF2 * 0.04 / math.sqrt(3), abs=1e-6)
    assert baseline.epsilon == math.inf
    assert baseline.metric("utility/auroc").mean == pytest.approx(0.82)
    lower_bound = low_epsilon.metric("audit/epsilon_lower_bound")  # 0.0, 0.1, 0.2 by seed
    assert lower_bound.mean == pytest.approx(0.1)
    assert lower_bound.low < 0  # not a probability, so not cut at 0
    assert sweep.epsilon_varies and sweep.has_audit
    assert low_epsilon.metric("missing/key").n == 0


def test_a_second_axis_groups_by_both_and_orders_epsilon_first(tmp_path):
    index = 0
    for hidden in [(512,), (16,)]:
        for epsilon in [math.inf, 8.0]:
            index += 1
            write_fake_run(tmp_path / f"{index}", epsilon=epsilon, seed=0, auroc=0.7, hidden=hidden)
    sweep = load_sweep([tmp_path])
    assert [axis.key for axis in sweep.axes] == ["privacy.epsilon", "model.hidden"]
    assert [tuple(group.axis_values.values()) for group in sweep.groups] == [
        (8.0, (512,)),
        (8.0, (16,)),
        (math.inf, (512,)),
        (math.inf, (16,)),
    ]
    assert [axis.key for axis in sweep.other_axes] == ["model.hidden"]


def test_patient_aucs_are_read_from_patient_risk_csv(tmp_path):
    write_fake_run(tmp_path / "run", epsilon=1.0, seed=0, auroc=0.7, patient_auc=(0.5, 0.9))
    (run,) = load_sweep([tmp_path / "run"]).runs
    np.testing.assert_array_equal(run.patient_auc, [0.5, 0.9])
    assert run.config["model.hidden"] == (64, 64) and run.config["privacy.epsilon"] == 1.0


def test_unfinished_and_old_runs_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    write_fake_run(tmp_path / "0", epsilon=1.0, seed=0, auroc=0.7)
    (tmp_path / "1" / ".hydra").mkdir(parents=True)  # started, killed before results.json
    old = tmp_path / "2"
    old.mkdir()
    (old / "results.json").write_text(json.dumps({"schema_version": "1.0", "status": "complete"}))
    broken = tmp_path / "3"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    (tmp_path / "not_a_run").mkdir()
    with caplog.at_level(logging.WARNING):
        sweep = load_sweep([tmp_path])
    assert len(sweep.runs) == 1
    skipped = {skip.run_dir.name: skip.reason for skip in sweep.skipped}
    assert set(skipped) == {"1", "2", "3"}
    assert "no results.json" in skipped["1"] and "without a summary" in skipped["2"]
    assert "unreadable" in skipped["3"]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3 and all("\n" not in message for message in warnings)
    assert any(str(tmp_path / "1") in message for message in warnings)


def test_no_finished_run_is_a_one_line_data_error(tmp_path):
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no finished runs .*; 1 unfinished") as error:
        load_sweep([tmp_path])
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match=r"no finished runs"):
        summarize_sweep([])


def test_missing_paths_and_other_files_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"does not exist"):
        find_run_dirs([tmp_path / "absent"])
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(DataError, match=r"is not a results\.json"):
        find_run_dirs([other])


def test_run_directories_are_found_in_job_number_order(tmp_path):
    for number in (10, 2, 1):
        write_fake_run(tmp_path / f"{number}-job", epsilon=1.0, seed=number, auroc=0.7)
    found = find_run_dirs([tmp_path, tmp_path / "2-job" / "results.json"])
    assert [path.name for path in found] == ["1-job", "2-job", "10-job"]


def test_seed_intervals_are_cut_to_each_numbers_range():
    from dptrain.reporting.sweep import _bounds, estimate

    counts = estimate([0.0, 100.0, 10.0], bounds=_bounds("audit/patients_exposed_fdr"))
    assert counts.low == 0.0 and counts.high > 100
    assert _bounds("audit/patient_auc_max") == (0.0, 1.0)
    assert _bounds("audit/null_share_above_0.9") == (0.0, 1.0)
    assert _bounds("audit/epsilon_lower_bound") == (-math.inf, math.inf)
