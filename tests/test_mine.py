"""Hard negatives: ``lenshpc mine``, ``data.extra_negatives`` in the chunk engine, ``lenshpc rounds``.

Real pipeline on the project's own data: ``small_population`` (simulated), a mock survey with tracer
lenses (``lenshpc.data.survey.mock_survey``), a 2-chunk ``tiny_resnet`` run, a real ranking.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

from lenshpc.errors import ConfigError, DataError, UserError
from test_train import tiny_cfg


@pytest.fixture(scope="module")
def ranked(tiny_run, small_population, tmp_path_factory):
    """(run dir, survey catalogue, rank dir) of a short run ranking a mock survey with 6 tracers."""
    from lenshpc.analysis.ranking.report import rank_catalogue
    from lenshpc.data.survey import mock_survey

    root = tmp_path_factory.mktemp("mine")
    run_dir = tiny_run
    survey = root / "survey.h5"
    mock_survey(small_population, survey, n_tracers=6, seed=0)
    rank_catalogue(run_dir, survey, root / "rank", top=0, tracers="is_tracer", show_progress=False)
    assert not (run_dir / "rank-survey").exists()
    return run_dir, survey, root / "rank"


def test_mine_top_writes_the_top_non_tracers(ranked, tmp_path):
    from lenshpc.analysis.ranking.mine import mine
    from lenshpc.analysis.ranking.report import read_ranked_csv
    from lenshpc.data.format import open_dataset

    _, survey, rank_dir = ranked
    result = mine(rank_dir, tmp_path / "hard.h5", top=10)
    table = read_ranked_csv(rank_dir / "ranked.csv")
    non_tracer = np.asarray(table["tracer"]).astype(int) == 0
    want_rows = np.asarray(table["row"]).astype(int)[non_tracer][:10]
    with open_dataset(tmp_path / "hard.h5") as hard, open_dataset(survey) as cat:
        assert hard.kind == "labelled" and hard.count("images") == 10 == result["n"]
        assert (hard.labels() == 0).all()
        meta = hard.meta("images")
        assert sorted(meta["catalogue_row"].tolist()) == sorted(want_rows.tolist())
        order = np.argsort(meta["catalogue_row"])
        np.testing.assert_array_equal(hard.read("images")[order], cat.read("images", np.sort(want_rows)))
        assert not meta["is_tracer"].astype(bool).any()
        prov = hard.attrs["provenance"]
        assert prov["selection"]["method"] == "top" and prov["catalogue_source"]["n"] == cat.count("images")
        assert len(hard.split("images", "train")) == 10
    with pytest.raises(UserError, match="exists"):
        mine(rank_dir, tmp_path / "hard.h5", top=10)


def test_mine_labels_csv(ranked, tmp_path):
    from lenshpc.analysis.ranking.mine import mine
    from lenshpc.analysis.ranking.report import read_ranked_csv

    _, _, rank_dir = ranked
    table = read_ranked_csv(rank_dir / "ranked.csv")
    ids = [str(i) for i in table["id"]]
    tracer = np.asarray(table["tracer"]).astype(int)
    picks = [i for i, t in zip(ids, tracer) if not t][:3]
    (tmp_path / "labels.csv").write_text(f"id,label\n{picks[0]},non-lens\n{picks[1]},maybe\n{picks[2]},non-lens\n")
    result = mine(rank_dir, tmp_path / "visual.h5", labels=tmp_path / "labels.csv")
    assert result["n"] == 2 and result["provenance"]["selection"]["counts"] == {"lens": 0, "maybe": 1, "non-lens": 2}

    (tmp_path / "unknown.csv").write_text(f"id,label\n{picks[0]},non-lens\nno-such-id,non-lens\n")
    with pytest.raises(UserError, match="not in the ranking.*no-such-id"):
        mine(rank_dir, tmp_path / "u.h5", labels=tmp_path / "unknown.csv")
    (tmp_path / "bad.csv").write_text(f"id,label\n{picks[0]},non-lens\n{picks[1]},spiral\n")
    with pytest.raises(UserError, match=r"bad.csv:3: label 'spiral'"):
        mine(rank_dir, tmp_path / "b.h5", labels=tmp_path / "bad.csv")
    assert not (tmp_path / "u.h5").exists() and not (tmp_path / "b.h5").exists()


def test_mine_refuses_another_catalogue(ranked, small_population, tmp_path):
    from lenshpc.analysis.ranking.mine import mine
    from lenshpc.data.survey import mock_survey

    _, survey, rank_dir = ranked
    other = tmp_path / "other.h5"
    mock_survey(small_population, other, n_tracers=4, seed=1)
    with pytest.raises(UserError, match="not the catalogue"):
        mine(rank_dir, tmp_path / "x.h5", top=5, catalogue=other)
    moved = tmp_path / "moved.h5"
    shutil.copy(survey, moved)  # the same catalogue, moved: fine
    assert mine(rank_dir, tmp_path / "ok.h5", top=5, catalogue=moved)["n"] == 5
    assert not (tmp_path / "x.h5").exists()


def test_extra_negatives_enter_the_chunks(repo_root, small_population, ranked, tmp_path):
    from lenshpc.analysis.ranking.mine import mine
    from lenshpc.data import transforms
    from lenshpc.data.chunks import ChunkEngine
    from lenshpc.data.format import open_dataset

    _, _, rank_dir = ranked
    mine(rank_dir, tmp_path / "hard.h5", top=8)
    with open_dataset(tmp_path / "hard.h5") as ds:
        hard = transforms.prepare(ds.read("images")).reshape(8, -1)
    extra = f"data.extra_negatives=[{{path: {tmp_path / 'hard.h5'}, fraction: 0.5}}]"
    cfg = tiny_cfg(repo_root, small_population, extra, "augment.enabled=false", "data.chunk_size=64")
    with ChunkEngine(cfg) as engine:
        x, y = engine.chunk(0)
        x_val, _ = engine.validation()
    negatives = x[y == 0].reshape(int((y == 0).sum()), -1)
    from_hard = [bool(np.any(np.all(np.isclose(n, hard), axis=1))) for n in negatives]
    assert sum(from_hard) == 16  # half of the 32 negatives
    with ChunkEngine(tiny_cfg(repo_root, small_population, "augment.enabled=false", "data.chunk_size=64")) as plain:
        np.testing.assert_array_equal(plain.validation()[0], x_val)  # validation set untouched

    with pytest.raises(DataError, match="no such file"):
        ChunkEngine(tiny_cfg(repo_root, small_population, "data.extra_negatives=[{path: /nope.h5}]"))
    with pytest.raises(ConfigError, match="fraction"):
        ChunkEngine(tiny_cfg(repo_root, small_population, f"data.extra_negatives=[{{path: {tmp_path / 'hard.h5'}, "
                                                          "fraction: 2}]"))


def test_rounds_inline(repo_root, small_population, ranked, tmp_path):
    """Two rounds + control arm in this process; a re-run skips everything (eval_catalogue: docs measurement)."""
    from lenshpc.analysis.ranking.rounds import load_rounds, run_rounds

    _, survey, _ = ranked
    spec_path = tmp_path / "rounds.yaml"
    spec_path.write_text(yaml.safe_dump({
        "out": "out", "config": str(repo_root / "configs" / "tiny.yaml"), "catalogue": str(survey),
        "tracers": "is_tracer", "rounds": 2, "mine_top": 8, "fraction": 0.5, "control": True,
        "set": {"data.path": str(small_population), "data.chunk_size": 64, "data.val_size": 32, "train.chunks": 1,
                "train.batch_size": 32, "train.patience": 0, "data.prefetch": 0},
        "fine_tune": {"train.chunks": 1, "train.lr_multipliers": {"stem_*": 0.1}}}))
    spec = load_rounds(spec_path)
    lines: list[str] = []
    rows = run_rounds(spec, "inline", echo=lines.append)
    out = tmp_path / "out"
    assert {(r["round"], r["arm"], r["catalogue"]) for r in rows} == {
        (1, "mined", "survey"), (2, "mined", "survey"), (2, "control", "survey")}
    for name in ("rounds.md", "rounds.csv", "rounds.png", "round1/hardneg.h5", "round2/round.json"):
        assert (out / name).is_file(), name
    r2 = json.loads((out / "round2" / "run" / "metrics.json").read_text())
    assert r2["start_from"]["path"] == str(out / "round1" / "run")
    assert r2["config"]["data.extra_negatives"] == [{"path": str(out / "round1" / "hardneg.h5"), "fraction": 0.5}]
    ctrl = json.loads((out / "round2" / "control" / "metrics.json").read_text())
    assert ctrl["config"]["data.extra_negatives"] == [] and ctrl["start_from"]["path"] == str(out / "round1" / "run")
    from lenshpc.analysis.ranking.metrics import rank_metrics  # the table holds rank_metrics' own numbers

    rm = json.loads((out / "round1" / "rank-mined" / "rank_metrics.json").read_text())
    row = next(r for r in rows if (r["round"], r["arm"], r["catalogue"]) == (1, "mined", "survey"))
    assert row["ranking_performance"] == rm["ranking_performance"] and callable(rank_metrics)
    assert "| round | arm | catalogue | ranking_performance" in (out / "rounds.md").read_text()
    again: list[str] = []
    run_rounds(load_rounds(spec_path), "inline", echo=again.append)
    assert all("skipping" in line for line in again) and len(again) == 2

    spec_path.write_text(spec_path.read_text() + "fine_tune_typo: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'fine_tune_typo'"):
        load_rounds(spec_path)


def test_shipped_rounds_spec_is_valid(repo_root):
    """configs/rounds/*.yaml: known keys only, and their training overrides apply to their base config."""
    from lenshpc.analysis.ranking.rounds import _KEYS
    from lenshpc.config import load_config

    files = sorted((repo_root / "configs" / "rounds").glob("*.yaml"))
    assert files
    for path in files:
        data = yaml.safe_load(path.read_text())
        assert set(data) <= _KEYS, path
        over = {**data.get("set", {}), **data.get("fine_tune", {}), "data.path": ""}
        load_config(path.parent / data["config"], **{k.replace(".", "__"): v for k, v in over.items()})
