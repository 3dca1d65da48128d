"""`python -m bench`'s new sections run and measure what they say (their timings are benchmarks, not asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.many import bench_many
from bench.training import bench_training
from tests.conftest import ROOT


def test_python_m_bench_runs_ssd_and_its_grid_on_a_tiny_workload(tmp_path, capsys):
    """`python -m bench`, the source of README's performance ratios, end to end on 100 generated images.

    The timings are not asserted (a benchmark, not a test); what the ratios are made of is: each ratio
    is its two recorded times divided, the 3 x 3 grid computes the importances once and reads them from
    the cache for the other eight points, and a larger alpha never selects more parameters.
    """
    from bench.__main__ import main

    output = tmp_path / "results.json"
    main(["--sections", "ssd,grid", "--n-full", "100", "--n-test", "20", "--output", str(output)])
    stored = json.loads(output.read_text())
    assert list(stored) == ["cpu:ssd+grid"], "a partial run is stored beside, never over, the full one"
    run = stored["cpu:ssd+grid"]
    ssd = run["ssd"]
    assert ssd["ssd_vs_bare"] == pytest.approx(ssd["ssd_s"] / ssd["bare_fwd_bwd_s"], rel=1e-9)
    grid = run["grid"]
    assert grid["grid_vs_one"] == pytest.approx(grid["grid_s"] / ssd["ssd_s"], rel=1e-9)
    assert grid["importance_passes"] == 2, "one pass over D and one over Df for all nine points"
    points = grid["points"]
    assert len(points) == 9 and points[0]["importance_cache"] == {"full": "computed", "forget": "computed"}
    assert all(p["importance_cache"] == {"full": "hit", "forget": "hit"} for p in points[1:])
    for lambda_ in {p["lambda"] for p in points}:
        changed = [p["fraction_changed"] for p in sorted(points, key=lambda p: p["alpha"]) if p["lambda"] == lambda_]
        assert changed == sorted(changed, reverse=True) and changed[0] > 0, changed
    assert "results: " + str(output) in capsys.readouterr().out


def test_training_section_times_train_py_against_a_bare_loop():
    """Three alternating pairs (train.py runs again in a fresh registry each time, not kept from the last):
    the reported pair is the one with the median ratio, every pair's ratio kept beside it."""
    out: dict = {}
    bench_training(torch.device("cpu"), out, epochs=1, settings={"digits": ["dataset=digits"]},
                   repeats={"digits": 3})
    row = out["training"]["digits"]
    assert row["n_train"] == 1293 and row["n_val"] == 144 and row["epochs"] == 1, "train.py's own split, no test data"
    assert row["train_py_s"] > 0 and row["bare_before_s"] > 0 and row["bare_after_s"] > 0
    assert row["training_vs_bare"] == pytest.approx(row["bare_s"] / row["train_py_s"], rel=1e-6)
    assert row["repeats"] == 3 and len(row["ratios"]) == 3
    assert row["training_vs_bare"] == pytest.approx(sorted(row["ratios"])[1], rel=1e-9), "the median pair"
    assert (row["ratio_low"], row["ratio_high"]) == (min(row["ratios"]), max(row["ratios"])), "the range quoted"
    assert len(set(row["ratios"])) == 3, "three separate timings, not one model found again and again"


def test_many_section_trains_stacked_models_like_separate_ones():
    out: dict = {}
    bench_many(out, ks=(1, 2), steps=2, size=8, batch=16)
    rows = out["many"]["rows"]
    assert [r["k"] for r in rows] == [1, 2]
    for row in rows:  # the same batches and optimiser: vmapped training equals one-at-a-time within float tolerance
        assert row["max_weight_difference"] < 1e-4, row
        assert row["stacked_s"] > 0 and row["one_at_a_time_s"] > 0


def test_subclass_target_bench_compares_training_only_estimates_with_the_retrained_records(trained_root, capsys):
    """``python -m bench.subclass_target`` reads what each sub-class request's retrained reference did from
    committed records and puts the training-only estimates beside it; on digits the original's validation
    accuracy on the sub-class is far above what retraining leaves (why it is not the sub-class target)."""
    from bench.subclass_target import LAYERS, main, retrained_by_request

    records = ROOT / "results" / "digits-ssd-subclass"
    retrained = retrained_by_request(records, seed=0)
    assert sorted(retrained) == ["1", "3", "5", "7", "9"]
    assert all(0 <= value <= 100 for row in retrained.values() for value in row.values())
    assert main(["--dataset", "digits", "--records", str(records), "--root", str(trained_root)]) == 0
    lines = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in capsys.readouterr().out.splitlines()
             if line.split() and line.split()[0] in retrained}
    assert sorted(lines) == sorted(retrained)
    for forget, (df_test, df_train, validation, *knn, vote, vote_lfssd) in lines.items():
        assert (df_test, df_train) == (pytest.approx(retrained[forget]["Df-test"], abs=0.05),
                                       pytest.approx(retrained[forget]["Df-train"], abs=0.05))
        assert len(knn) == len(LAYERS) and all(0 <= x <= 100 for x in (validation, *knn, vote, vote_lfssd))
    assert lines["1"][2] - lines["1"][1] > 50, "the coarse model recognises digit 1's validation images; retraining does not"
    # the search's default sub-class target: like retraining, the pixel vote carries almost none of digit 1 or 7
    assert lines["1"][-2] < 10 and lines["7"][-2] < 10, "the neighbour vote must say the paired digit is lost"
    assert main(["--dataset", "digits", "--records", str(records), "--seed", "7"]) == 2  # no such runs


def test_memorisation_bench_reads_the_originals_attack_and_says_when_a_recipe_does_not_memorise(trained_root, capsys):
    """``python -m bench.memorisation`` runs the untouched original on a random request and reports the attack AUC
    that the run's record holds; 8 px digits are not memorised (issue 27: AUC about 0.5), so it says so, exit 1."""
    from bench.memorisation import MIN_AUC, main

    assert main(["--dataset", "digits", "--seeds", "0", "--sizes", "100", "--root", str(trained_root)]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 0 | 100 |"))
    auc, df_train, validation, test = (float(x) for x in row.split("|")[3:7])
    assert 0.3 < auc < MIN_AUC, "digits' original must read near chance, below the memorisation bar"
    assert df_train > 95 and 80 < test <= 100 and 0 < validation <= 100
    assert "DOES NOT MEMORISE" in out
    assert main(["--dataset", "no_such_dataset", "--seeds", "0", "--sizes", "100", "--root", str(trained_root)]) == 2


def test_training_rows_are_chosen_by_name_and_an_unknown_one_is_refused(tmp_path):
    """`--train-settings` runs the attribution rows (stored beside, never over, the default rows); a typo
    or a missing training section ends with the names it knows, before anything runs."""
    from bench.__main__ import main
    from bench.training import ATTRIBUTION, SETTINGS, chosen_settings

    assert chosen_settings(None) == SETTINGS
    assert chosen_settings("digits_no_precise_bn") == {"digits_no_precise_bn": ATTRIBUTION["digits_no_precise_bn"]}
    assert "dataset.training.precise_bn=0" in ATTRIBUTION["fashion_mnist_no_precise_bn"]
    output = tmp_path / "results.json"
    with pytest.raises(SystemExit, match="unknown or no setting.*known: digits"):
        main(["--sections", "training", "--train-settings", "digit", "--output", str(output)])
    with pytest.raises(SystemExit, match="needs the training section"):
        main(["--sections", "ssd", "--train-settings", "digits", "--output", str(output)])
    assert not output.exists(), "nothing written for a refused run"


def test_a_variant_of_the_training_rows_is_stored_under_its_own_key(tmp_path):
    from bench.report import save

    path = tmp_path / "results.json"
    save({"machine": {"device": "cpu"}, "training": {}}, path, {"training"})
    save({"machine": {"device": "cpu"}, "training": {"x": 1}}, path, {"training"}, variant="digits_no_precise_bn")
    stored = json.loads(path.read_text())
    assert set(stored) == {"cpu:training", "cpu:training:digits_no_precise_bn"}
    assert stored["cpu:training"] == {"machine": {"device": "cpu"}, "training": {}}, "the default rows kept"
