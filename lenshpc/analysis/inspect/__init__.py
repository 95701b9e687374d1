"""Looking inside trained runs: ``gradcam`` (Eq 3.24–3.25), ``infocontent`` (Figs 5.9, 5.10, 7.22), both on the
one "skip if ``summary.json`` is current" skeleton of ``cached``."""
