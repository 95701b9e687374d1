"""Mock survey catalogues (lenshpc.data.survey): held-out negatives + tracer mock lenses, unlabelled."""

from __future__ import annotations

import numpy as np
import pytest

from lenshpc.data import transforms
from lenshpc.data.format import open_dataset
from lenshpc.data.survey import mock_survey
from lenshpc.errors import DataError


def test_mock_survey_holds_held_out_negatives_and_exact_tracer_merges(small_population, tmp_path):
    out = tmp_path / "survey.h5"
    info = mock_survey(small_population, out, n_tracers=7, alpha_min=0.1, alpha_max=0.2, seed=3)
    with open_dataset(small_population) as pop:
        held_out = np.concatenate([pop.split("negatives", s) for s in ("val", "test")])
        with open_dataset(out) as ds:
            assert ds.kind == "labelled" and not ds.has_labels
            assert len(ds) == info["n"] == len(held_out) + 7
            meta = ds.meta("images")
            images = ds.read("images")
            tracer = meta["is_tracer"].astype(bool)
            assert tracer.sum() == 7 and sorted(meta["id"]) == list(range(info["n"]))
            assert np.all((meta["alpha"][tracer] >= 0.1) & (meta["alpha"][tracer] <= 0.2))
            assert set(meta["negative_index"][~tracer]) == set(held_out)  # every held-out negative, once
            # negatives stored raw; tracers are the Eq 4.2 merge of the recorded lens, source and α
            for row in np.flatnonzero(~tracer)[:5]:
                np.testing.assert_array_equal(images[row], pop.read("negatives", [meta["negative_index"][row]])[0])
            rows = np.flatnonzero(tracer)
            expected = transforms.merge(pop.read("lenses", meta["lens_index"][rows]),
                                        pop.read("sources", meta["source_index"][rows]),
                                        meta["alpha"][rows].astype(np.float32))
            np.testing.assert_allclose(images[rows], expected, rtol=1e-6)
    # seeded: the same call writes the same catalogue
    again = tmp_path / "again.h5"
    mock_survey(small_population, again, n_tracers=7, alpha_min=0.1, alpha_max=0.2, seed=3)
    with open_dataset(out) as a, open_dataset(again) as b:
        np.testing.assert_array_equal(a.read("images"), b.read("images"))


def test_mock_survey_needs_a_population(small_population, tmp_path):
    survey = tmp_path / "s.h5"
    mock_survey(small_population, survey, n_tracers=2)
    with pytest.raises(DataError, match="population dataset"):
        mock_survey(survey, tmp_path / "t.h5")
    with pytest.raises(DataError, match="n_tracers"):
        mock_survey(small_population, tmp_path / "u.h5", n_tracers=0)
