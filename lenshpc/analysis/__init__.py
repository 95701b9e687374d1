"""Analysis of trained runs (thesis research questions 2–3, LensFlow's ranking): batch tools that write files.

Modules
-------
:mod:`lenshpc.analysis.members`
    Ensemble members (run dirs, sweep groups), common prediction matrices, :func:`load_scorer`.
:mod:`lenshpc.analysis.ensemble`
    Nelder–Mead weighted averages (Eq 3.22), seed committees, ensemble specs and their Table 5.2 report.
:mod:`lenshpc.analysis.ide`
    The input-dependent ensemble (Sec 3.6.2): a dynamic ensembler trained by the run loop.
:mod:`lenshpc.analysis.gradcam`
    Grad-CAM heatmaps (Eq 3.24–3.25) and Fig 5.3-style panels.
:mod:`lenshpc.analysis.infocontent`
    TPR over (θ_E, α), TPR/FNR per α bin, source area above the noise (Figs 5.9, 5.10, 7.22).
:mod:`lenshpc.analysis.rank`
    Scoring and ranking survey catalogues (sharded), tracer rank curves and LensFlow's metrics.

Importing this package is cheap; TensorFlow is imported by the functions that need it.
"""
