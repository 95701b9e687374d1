"""``lenshpc rank``: LensFlow's ranking metrics on synthetic ranks, and the sharded ranking end to end.

The end-to-end tests rank a small catalogue built from the ``small_population`` fixture: negatives
plus bright mock lenses (the tracers), scored by a ``tiny_sweep`` run directory.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from lenshpc.analysis.ranking import metrics as rk
from lenshpc.errors import DataError, UserError

N_NEG, N_TRACERS = 96, 24


# ====================================================================== metrics on synthetic ranks
def test_perfect_and_reversed_rankings_give_plus_and_minus_one():
    n_total, n = 1000, 20
    perfect = np.arange(1, n + 1) / n_total
    reversed_ = np.arange(n_total - n + 1, n_total + 1) / n_total
    assert rk.ranking_performance(perfect, n_total) == pytest.approx(1.0, abs=1e-12)
    assert rk.ranking_performance(reversed_, n_total) == pytest.approx(-1.0, abs=1e-12)
    # LensFlow's efficiency unchanged: 1 − (n+1)/N and −1 + (n−1)/N at the extremes (→ ±1 for n ≪ N).
    assert rk.classification_efficiency(perfect) == pytest.approx(1 - (n + 1) / n_total, abs=1e-12)
    assert rk.classification_efficiency(reversed_) == pytest.approx(-1 + (n - 1) / n_total, abs=1e-12)
    assert rk.classification_efficiency(perfect) == pytest.approx(1, abs=0.025)
    assert rk.classification_efficiency(reversed_) == pytest.approx(-1, abs=0.025)
    # Both from scores, through the mid-ranks: tracers scored highest / lowest.
    scores = np.linspace(1, 0, n_total)
    top, bottom = np.zeros(n_total, bool), np.zeros(n_total, bool)
    top[:n], bottom[-n:] = True, True
    assert rk.rank_metrics(scores, top)["ranking_performance"] == pytest.approx(1.0)
    assert rk.rank_metrics(scores, bottom)["ranking_performance"] == pytest.approx(-1.0)


def test_random_rankings_average_to_zero():
    rng = np.random.default_rng(7)
    n_total, n = 5000, 100
    rp, ce = [], []
    for _ in range(40):
        rel = rk.relative_ranks(rng.random(n_total))[rng.choice(n_total, n, replace=False)]
        rp.append(rk.ranking_performance(rel, n_total))
        ce.append(rk.classification_efficiency(rel))
    # One ranking: sd of RP ≈ sqrt((N+1)/(3n(N−n))) ≈ 0.058; the mean of 40 has sd ≈ 0.009.
    assert abs(np.mean(rp)) < 0.04 and abs(np.mean(ce)) < 0.04
    assert 0.03 < np.std(rp) < 0.09
    assert max(abs(v) for v in rp) < 0.25


def test_hand_computed_example_with_ties():
    # 8 rows; the two 0.9s tie (positions 2–3 → mid-rank 2.5); tracers: rows 0, 2, 5.
    scores = np.array([0.95, 0.9, 0.9, 0.1, 0.5, 0.3, 0.8, 0.2])
    tracers = np.zeros(8, bool)
    tracers[[0, 2, 5]] = True
    assert rk.ranks(scores).tolist() == [1, 2.5, 2.5, 8, 5, 6, 4, 7]
    assert rk.ranking_order(scores).tolist() == [0, 1, 2, 6, 4, 5, 7, 3]  # ties keep catalogue order
    rel = rk.relative_ranks(scores)[tracers]
    assert rel.tolist() == [1 / 8, 2.5 / 8, 6 / 8]
    # mean rank 9.5/3; RP = (N + 1 − 2·mean R)/(N − n) = (9 − 19/3)/5 = 8/15
    assert rk.ranking_performance(rel, 8) == pytest.approx(8 / 15, abs=1e-12)
    # CE = 1 − 2·mean(r) = 1 − 2·(9.5/3)/8 = 5/24
    assert rk.classification_efficiency(rel) == pytest.approx(5 / 24, abs=1e-12)
    # RP = 2·AUROC − 1 (tracers vs the rest, ties ½): pairs won 5 + 4.5 + 2 = 11.5 of 15.
    assert rk.ranking_performance(rel, 8) == pytest.approx(2 * 11.5 / 15 - 1, abs=1e-12)
    m = rk.rank_metrics(scores, tracers)
    assert m["auroc"] == pytest.approx(11.5 / 15)
    assert (m["n"], m["n_tracers"], m["best_tracer_rank"], m["worst_tracer_rank"]) == (8, 3, 1.0, 6.0)
    assert m["tracers_in_top_10pct"] == 0 and m["fraction_of_tracers_in_top_10pct"] == 0
    # TRC: each tracer rises by 1/3 across its own position (width 1/8); area − ½ = RP·(N − n)/(2N).
    x, y = rk.tracer_rank_curve(rel, 8)
    expected = [(0, 0), (1 / 8, 1 / 3), (1.5 / 8, 1 / 3), (2.5 / 8, 2 / 3), (5 / 8, 2 / 3), (6 / 8, 1), (1, 1)]
    assert np.allclose(np.c_[x, y], expected)
    assert np.trapezoid(y, x) - 0.5 == pytest.approx(8 / 15 * 5 / 16)


def test_ranking_performance_is_gini_of_auroc_with_ties():
    from lenshpc.metrics import auroc

    rng = np.random.default_rng(3)
    scores = np.round(rng.random(400), 2)  # many ties
    tracers = rng.random(400) < 0.1
    scores[tracers] += 0.2  # better than chance
    rel = rk.relative_ranks(scores)[tracers]
    rp = rk.ranking_performance(rel, 400)
    assert rp == pytest.approx(2 * auroc(tracers.astype(np.uint8), scores) - 1, abs=1e-12)
    x, y = rk.tracer_rank_curve(rel, 400)
    assert np.trapezoid(y, x) - 0.5 == pytest.approx(rp * (400 - tracers.sum()) / 800, abs=1e-12)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0) and (x[0], y[0], x[-1], y[-1]) == (0, 0, 1, 1)


def test_lensflow_method_reproduces_the_papers_example():
    # LensFlow (seed 004, "Ranks"): the Phase 2 tracers' relative ranks; the paper's code prints 0.596667.
    r = [0.00817647, 0.0156471, 0.0214706, 0.0237647, 0.0262941, 0.0289412, 0.0336471, 0.0341176, 0.0364118,
         0.0417647, 0.047, 0.0548235, 0.0554118, 0.0575882, 0.0610588, 0.0617059, 0.0618824, 0.0657647,
         0.0727059, 0.0757647, 0.0967059, 0.111176, 0.117588, 0.132882, 0.134765, 0.141412, 0.147588, 0.152176,
         0.168706, 0.183471, 0.209118, 0.226765, 0.23, 0.237176, 0.243647, 0.250765, 0.261706, 0.262118,
         0.278765, 0.290529, 0.300412, 0.304471, 0.324882, 0.357706, 0.389, 0.411706, 0.453765, 0.477412,
         0.649647, 0.729059, 0.859118, 0.934118]
    assert rk.ranking_performance(r, method="lensflow") == pytest.approx(0.596667, abs=1e-4)
    # The exact area is 1 − 2·mean(r) up to the finite-N terms: 0.5788 here, not 0.5967 (interpolation bias).
    assert rk.classification_efficiency(r) == pytest.approx(0.578758, abs=1e-5)


def test_metric_input_errors():
    with pytest.raises(DataError, match="no tracers"):
        rk.classification_efficiency([])
    with pytest.raises(DataError, match="not tracers"):
        rk.ranking_performance([0.5, 1.0], 2)
    with pytest.raises(DataError, match=r"\(0, 1\]"):
        rk.ranking_performance([0.0, 0.5], 10)
    with pytest.raises(DataError, match="NaN"):
        rk.ranks([0.1, np.nan])
    with pytest.raises(ValueError, match="method"):
        rk.ranking_performance([0.1], 10, method="auc")


# ====================================================================== catalogue fixtures
def _catalogue(population: Path, path: Path, *, labels: bool, size: int | None = None) -> dict:
    """Negatives + bright mock lenses (tracers, rows shuffled) as a labelled lenshpc dataset."""
    from lenshpc.data import transforms
    from lenshpc.data.format import open_dataset, write_labelled

    with open_dataset(population) as ds:
        neg = ds.read("negatives", np.arange(N_NEG))
        lenses = ds.read("lenses", np.arange(N_TRACERS))
        sources = ds.read("sources", np.arange(N_TRACERS))
    # Bright arcs (α = 2, brighter than the fixture's training range 0.3–0.8): the short-trained fixture
    # model is then clearly better than chance (ranking performance ≈ 0.75 vs ≈ 0.27 at α = 0.6).
    alpha = np.full(N_TRACERS, 2.0, np.float32)
    mock = transforms.merge(lenses, sources, alpha)
    images = np.concatenate([neg, mock])
    is_tracer = np.r_[np.zeros(N_NEG, np.uint8), np.ones(N_TRACERS, np.uint8)]
    perm = np.random.default_rng(0).permutation(len(images))
    images, is_tracer = images[perm], is_tracer[perm]
    if size is not None:
        images = images[:, :size, :size]
    ids = 5000 + np.arange(len(images)) * 3
    write_labelled(path, images, is_tracer if labels else None, ids=ids,
                   meta={"is_known_lens": is_tracer, "field": np.array(["KiDS_%d" % (i % 4) for i in range(len(ids))])})
    return {"path": path, "ids": ids, "tracer": is_tracer.astype(bool), "images": images}


@pytest.fixture(scope="module")
def catalogue(small_population, tmp_path_factory):
    return _catalogue(small_population, tmp_path_factory.mktemp("rankcat") / "cat.h5", labels=False)


@pytest.fixture(scope="module")
def model(tiny_sweep) -> Path:
    return tiny_sweep / "bce" / "seed0"


@pytest.fixture(scope="module")
def direct_scores(model, catalogue):
    from lenshpc.analysis.ensembles.scorer import load_scorer
    from lenshpc.data import transforms

    return load_scorer(model).score(transforms.prepare(catalogue["images"]))


@pytest.fixture(scope="module")
def ranked(model, catalogue, tmp_path_factory):
    """One unsharded inline ranking through the CLI."""
    from lenshpc.cli import main

    out = tmp_path_factory.mktemp("rank_k1")
    assert main(["rank", str(model), str(catalogue["path"]), "--out", str(out), "--tracers", "is_known_lens",
                 "--top", "12", "--batch-size", "16"]) == 0
    return out


# ====================================================================== end to end
def test_ranked_csv_is_complete_sorted_and_equals_direct_scores(ranked, catalogue, direct_scores):
    from lenshpc.analysis.ranking.report import read_ranked_csv

    t = read_ranked_csv(ranked / "ranked.csv")
    n = len(catalogue["ids"])
    assert sorted(t["row"].tolist()) == list(range(n))  # every row once
    assert np.all(np.diff(t["score"]) <= 0)  # most lens-like first
    assert t["id"].tolist() == [str(catalogue["ids"][r]) for r in t["row"]]
    # Scores written with 9 digits round-trip float32 exactly: equal to scoring the cutouts directly.
    assert np.array_equal(t["score"].astype(np.float32), direct_scores[t["row"]])
    assert np.array_equal(t["rank"], rk.ranks(direct_scores)[t["row"]])
    assert np.allclose(t["relative_rank"], t["rank"] / n, rtol=0, atol=1e-15)
    assert np.array_equal(t["tracer"].astype(bool), catalogue["tracer"][t["row"]])
    assert (ranked / "ranked.csv").read_text().splitlines()[0] == "id,score,rank,relative_rank,tracer,row"


def test_tracer_metrics_montage_and_provenance(ranked, catalogue, direct_scores):
    m = json.loads((ranked / "rank_metrics.json").read_text())
    assert (m["n"], m["n_tracers"]) == (N_NEG + N_TRACERS, N_TRACERS)
    # The model is clearly better than chance on bright mock lenses.
    assert m["ranking_performance"] > 0.3 and m["classification_efficiency"] > 0.2
    assert m["ranking_performance"] == pytest.approx(2 * m["auroc"] - 1, abs=1e-9)
    expected = rk.rank_metrics(direct_scores, catalogue["tracer"])
    for key in ("ranking_performance", "classification_efficiency", "mean_relative_tracer_rank",
                "tracers_in_top_10pct"):
        assert m[key] == pytest.approx(expected[key], abs=1e-12)
    assert m["tracers"]["source"] == "meta column 'is_known_lens' truthy"
    for png in ("top.png", "tracer_rank_curve.png"):
        head = (ranked / png).read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" and (ranked / png).stat().st_size > 10_000
    info = json.loads((ranked / "rank.json").read_text())
    assert info["n"] == N_NEG + N_TRACERS and info["shards"] == 1 and len(info["top"]) == 10
    prov = info["provenance"]
    assert m["provenance"] == prov and prov["command"] == "rank" and prov["executor"] == "inline"
    assert prov["data"]["file"]["path"] == str(Path(catalogue["path"]).resolve())
    assert prov["data"]["file"]["lenshpc_format"] == "labelled" and prov["started"] <= prov["ended"]
    model_prov = json.loads((Path(info["model"]) / "metrics.json").read_text())["provenance"]
    assert prov["model"]["lenshpc"] == model_prov["lenshpc"]  # which code trained the ranking model
    assert sorted(p.name for p in (ranked / "shards").iterdir()) == ["scores-0000-of-0001.h5"]


def test_sharded_inline_is_byte_identical_and_resumes(ranked, model, catalogue, tmp_path, monkeypatch):
    from lenshpc.analysis.ranking import shards as rank_shards
    from lenshpc.analysis.ranking.report import rank_catalogue
    from lenshpc.analysis.ranking.shards import shard_path

    monkeypatch.setattr(rank_shards, "BLOCK_ROWS", 32)  # several read blocks per shard (2 batches each)

    out = tmp_path / "k3"
    kw = dict(executor="inline", shards=3, tracers="is_known_lens", top=12, batch_size=16, show_progress=False)
    first = rank_catalogue(model, catalogue["path"], out, **kw)
    assert first["shards_computed"] == [0, 1, 2]
    assert (out / "ranked.csv").read_bytes() == (ranked / "ranked.csv").read_bytes()
    # Batch-aligned contiguous ranges: 120 rows = 8 batches of 16 → shards of 2, 3, 3 batches.
    with h5py.File(shard_path(out, 1, 3)) as fh:
        assert (fh.attrs["first"], fh.attrs["stop"]) == (32, 80)
    # A killed shard: delete one file → only that one is recomputed, the others are reused untouched.
    mtimes = {k: shard_path(out, k, 3).stat().st_mtime_ns for k in (0, 2)}
    shard_path(out, 1, 3).unlink()
    (out / "ranked.csv").unlink()
    again = rank_catalogue(model, catalogue["path"], out, **kw)
    assert again["shards_computed"] == [1] and again["shards_reused"] == [0, 2]
    assert {k: shard_path(out, k, 3).stat().st_mtime_ns for k in (0, 2)} == mtimes
    assert (out / "ranked.csv").read_bytes() == (ranked / "ranked.csv").read_bytes()
    # A truncated / foreign shard file is recomputed too; a half-written temp file is ignored.
    with h5py.File(shard_path(out, 2, 3), "r+") as fh:
        fh.attrs["plan"] = "{}"
    (out / "shards" / ".scores-0000-of-0003.h5.abc.tmp").write_bytes(b"partial")
    third = rank_catalogue(model, catalogue["path"], out, **kw)
    assert third["shards_computed"] == [2]
    assert (out / "ranked.csv").read_bytes() == (ranked / "ranked.csv").read_bytes()


def test_array_task_then_merge_only(model, catalogue, ranked, tmp_path):
    from lenshpc.cli import main

    out = tmp_path / "array"
    base = ["rank", str(model), str(catalogue["path"]), "--out", str(out), "--shards", "2", "--batch-size", "16",
            "--tracers", "is_known_lens", "--top", "12"]
    assert main([*base, "--shard-index", "1"]) == 0
    assert not (out / "ranked.csv").exists()
    assert main([*base, "--merge-only"]) == 2  # shard 0 missing: a clear user error, nothing written
    assert not (out / "ranked.csv").exists()
    assert main([*base, "--shard-index", "0"]) == 0
    assert main([*base, "--merge-only"]) == 0
    assert (out / "ranked.csv").read_bytes() == (ranked / "ranked.csv").read_bytes()


def test_local_executor_submitit(model, catalogue, ranked, tmp_path):
    from lenshpc.analysis.ranking.report import rank_catalogue

    out = tmp_path / "local"
    result = rank_catalogue(model, catalogue["path"], out, executor="local", shards=2, tracers="is_known_lens",
                            top=0, batch_size=16, show_progress=False)
    assert result["shards_computed"] == [0, 1]
    assert list((out / "shards" / "submitit").iterdir())  # submitit job folders
    assert not (out / "top.png").exists()  # --top 0
    assert (out / "ranked.csv").read_bytes() == (ranked / "ranked.csv").read_bytes()


def test_tracer_selection(model, catalogue, small_population, tmp_path):
    from lenshpc.analysis.ranking.report import select_tracers
    from lenshpc.data.format import open_dataset

    ids = catalogue["ids"]
    wanted = ids[catalogue["tracer"]]
    id_file = tmp_path / "tracers.csv"
    id_file.write_text("id,name\n# known lenses\n" + "".join(f"{i:08d},lens{i}\n" for i in wanted) + "999999,x\n")
    with open_dataset(catalogue["path"]) as ds:
        assert not ds.has_labels
        flags, info = select_tracers(ds, str(id_file), ids)  # leading zeros as in `lenshpc stack`
        assert np.array_equal(flags, catalogue["tracer"]) and info["ids_not_found"] == 1
        flags, info = select_tracers(ds, "is_known_lens", ids)
        assert np.array_equal(flags, catalogue["tracer"])
        assert select_tracers(ds, None, ids)[0] is None  # unlabelled: no tracers by default
        assert select_tracers(ds, "none", ids)[0] is None
        with pytest.raises(UserError, match="unlabelled"):
            select_tracers(ds, "labels", ids)
        with pytest.raises(UserError, match="columns: field, id, is_known_lens"):
            select_tracers(ds, "is_lens", ids)
        with pytest.raises(UserError, match="true/false"):
            select_tracers(ds, "field", ids)
    labelled = _catalogue(small_population, tmp_path / "labelled.h5", labels=True)
    with open_dataset(labelled["path"]) as ds:
        flags, info = select_tracers(ds, None, labelled["ids"])  # default: labels == 1
        assert np.array_equal(flags, labelled["tracer"]) and info["source"] == "labels == 1"


def test_clear_errors(model, catalogue, small_population, tmp_path, capsys):
    from lenshpc.cli import main
    from lenshpc.data.format import write_labelled

    # The catalogue's cutouts have another shape than the model's input: exit 2 before any scoring.
    small = _catalogue(small_population, tmp_path / "small.h5", labels=False, size=48)
    assert main(["rank", str(model), str(small["path"]), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "(48, 48, 1)" in err and "(64, 64, 1)" in err
    assert not (tmp_path / "o1" / "shards").exists() or not list((tmp_path / "o1" / "shards").iterdir())
    # No images array.
    broken = tmp_path / "broken.h5"
    write_labelled(broken, np.zeros((4, 64, 64, 1), np.float32), None)
    with h5py.File(broken, "r+") as fh:
        del fh["images"]
    assert main(["rank", str(model), str(broken), "--out", str(tmp_path / "o2")]) == 2
    assert "lacks the 'images' array" in capsys.readouterr().err
    # A population dataset is not a catalogue; a missing model; a bad --tracers column.
    assert main(["rank", str(model), str(small_population), "--out", str(tmp_path / "o3")]) == 2
    assert "population dataset" in capsys.readouterr().err
    assert main(["rank", str(tmp_path / "nope"), str(catalogue["path"])]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["rank", str(model), str(catalogue["path"]), "--out", str(tmp_path / "o4"), "--tracers", "lens"]) == 2
    assert "neither a file nor a metadata column" in capsys.readouterr().err
    assert main(["rank", str(model), str(catalogue["path"]), "--shards", "2", "--shard-index", "5",
                 "--out", str(tmp_path / "o5")]) == 2
    assert "outside 0..1" in capsys.readouterr().err


def test_ensemble_dir_is_a_model(model, tiny_sweep, catalogue, direct_scores, tmp_path):
    """An averaging ensemble run directory (ensemble.json + DONE) ranks like its members' mean."""
    from lenshpc.analysis.ensembles.scorer import load_scorer
    from lenshpc.analysis.ranking.report import rank_catalogue, read_ranked_csv
    from lenshpc.data import transforms

    other = tiny_sweep / "fbeta_soft" / "seed0"
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "ensemble.json").write_text(json.dumps({  # the docs/ensembles.md layout
        "version": 1, "name": "avg2", "method": "average", "weights": [0.5, 0.5],
        "members": [str(model), str(other)], "member_names": ["bce", "fbeta_soft"]}))
    (ens / "DONE").touch()
    rank_catalogue(ens, catalogue["path"], tmp_path / "out", tracers="is_known_lens", top=0, batch_size=16,
                   show_progress=False)
    t = read_ranked_csv(tmp_path / "out" / "ranked.csv")
    mean = load_scorer(ens).score(transforms.prepare(catalogue["images"]))
    other_scores = load_scorer(other).score(transforms.prepare(catalogue["images"]))
    assert np.allclose(mean, (direct_scores.astype(np.float64) + other_scores) / 2, atol=1e-6)
    assert np.array_equal(t["score"].astype(np.float32), mean[t["row"]])


def test_rank_help_lists_examples(capsys):
    from lenshpc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["rank", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in ("--shards", "--merge-only", "--tracers", "Examples:", "ranking performance", "--partition"):
        assert text in out


def test_tracer_rank_curve_matches_its_formula_on_random_cases():
    rng = np.random.default_rng(11)
    for _ in range(30):
        n_total = int(rng.integers(5, 300))
        n = int(rng.integers(1, n_total))
        scores = np.round(rng.random(n_total), int(rng.integers(1, 3)))  # ties of every size
        tracers = np.zeros(n_total, bool)
        tracers[rng.choice(n_total, n, replace=False)] = True
        rel = rk.relative_ranks(scores)[tracers]
        x, y = rk.tracer_rank_curve(rel, n_total)
        xs = np.linspace(0, 1, 501)
        brute = np.clip(n_total * xs[:, None] - rel[None, :] * n_total + 1, 0, 1).mean(axis=1)
        assert np.allclose(np.interp(xs, x, y), brute, atol=1e-12)


def test_csv_quotes_text_ids_and_reads_back(tmp_path):
    from lenshpc.analysis.ranking.report import read_ranked_csv, write_ranked_csv

    ids = np.array(["KiDS J0012,3-2501", 'odd"name', "plain"], dtype=object)
    write_ranked_csv(tmp_path / "r.csv", ids, np.array([0.1, 0.5, 0.5], np.float32), np.array([1, 0, 0], bool))
    assert (tmp_path / "r.csv").read_text().splitlines() == [
        "id,score,rank,relative_rank,tracer,row", '"odd""name",0.5,1.5,0.5,0,1', "plain,0.5,1.5,0.5,0,2",
        '"KiDS J0012,3-2501",0.100000001,3,1.0,1,0']
    t = read_ranked_csv(tmp_path / "r.csv")
    assert t["id"].tolist() == ['odd"name', "plain", "KiDS J0012,3-2501"] and t["tracer"].tolist() == [0, 0, 1]


def test_empty_shards_and_a_changed_model_recompute(model, catalogue, ranked, tmp_path):
    from lenshpc.analysis.ranking.report import rank_catalogue

    # More shards than batches (120 rows = 8 batches of 16): empty shards are fine, the result the same.
    out = tmp_path / "k10"
    r = rank_catalogue(model, catalogue["path"], out, shards=10, tracers="is_known_lens", top=12, batch_size=16,
                       show_progress=False)
    assert len(r["shards_computed"]) == 10
    assert (out / "ranked.csv").read_bytes() == (ranked / "ranked.csv").read_bytes()
    # A retrained model (new model.keras) invalidates every shard of the plan.
    run = tmp_path / "run"
    shutil.copytree(model, run)
    kw = dict(shards=2, tracers="is_known_lens", top=0, batch_size=16, show_progress=False)
    assert rank_catalogue(run, catalogue["path"], tmp_path / "o", **kw)["shards_computed"] == [0, 1]
    assert rank_catalogue(run, catalogue["path"], tmp_path / "o", **kw)["shards_computed"] == []
    st = (run / "model.keras").stat()
    os.utime(run / "model.keras", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert rank_catalogue(run, catalogue["path"], tmp_path / "o", **kw)["shards_computed"] == [0, 1]


def test_rank_array_script_dry_run(repo_root, tmp_path):
    import subprocess

    model, cat = tmp_path / "run", tmp_path / "cat.h5"
    model.mkdir()
    cat.touch()
    script = str(repo_root / "jobs" / "rank_array.sh")
    env = {**os.environ, "LENSHPC_DRY_RUN": "1", "RANK_SHARDS": "4", "LENSHPC_CMD": "lenshpc"}
    env.pop("SLURM_JOB_ID", None)
    login = subprocess.run(["bash", script, str(model), str(cat), "--tracers", "is_lens"], env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert login[0].startswith("sbatch --parsable --array=0-3 ") and login[0].endswith("--tracers is_lens")
    assert "--dependency=afterok:<array> --export=ALL,RANK_STEP=merge" in login[1]
    task = subprocess.run(["bash", script, str(model), str(cat), "--top", "9"], capture_output=True, text=True,
                          env={**env, "SLURM_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "2"}, check=True).stdout
    assert f"lenshpc rank {model} {cat} --shards 4 --shard-index 2 --executor inline --top 9" in task
    merge = subprocess.run(["bash", script, str(model), str(cat)], capture_output=True, text=True,
                           env={**env, "SLURM_JOB_ID": "8", "RANK_STEP": "merge"}, check=True).stdout
    assert f"lenshpc rank {model} {cat} --shards 4 --executor inline --merge-only" in merge
    bad = subprocess.run(["bash", script, str(tmp_path / "nope"), str(cat)], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "model not found" in bad.stderr
