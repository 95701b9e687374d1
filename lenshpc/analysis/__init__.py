"""Analysis of trained runs (thesis research questions 2–3, LensFlow's ranking): batch tools that write files.

Wings
-----
:mod:`lenshpc.analysis.ensembles`
    Members, scorers (:func:`~lenshpc.analysis.ensembles.scorer.load_scorer`), Nelder–Mead fits (Eq 3.22), seed
    committees, ensemble specs and their Table 5.2 report, the input-dependent ensemble (Sec 3.6.2).
:mod:`lenshpc.analysis.ranking`
    Scoring survey catalogues (sharded), tracer rank metrics (LensFlow), mining rounds, the inspection page.
:mod:`lenshpc.analysis.inspect`
    Grad-CAM heatmaps (Eq 3.24–3.25) and information content (Figs 5.9, 5.10, 7.22), one cached-summary skeleton.

Importing these packages is cheap; TensorFlow is imported by the functions that need it.
"""
