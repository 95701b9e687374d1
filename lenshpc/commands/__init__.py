"""One module per CLI verb (see ``lenshpc.cli``): ``HELP``, ``add_arguments``, ``run``."""


def thresholds_text(metrics: dict) -> str:
    """``fbeta 0.0 at t = 0.5; at t* = 0.31 (max val Fβ): fbeta 0.97, precision 0.98, recall 0.85`` for a summary line."""

    def num(key: str) -> str:
        value = metrics.get(key)
        return "–" if value is None else f"{value:.4g}"

    text = f"fbeta {num('fbeta')} at t = {num('threshold')}"
    if metrics.get("threshold_tuned") is not None:
        text += (f"; at t* = {num('threshold_tuned')} (max validation Fβ): fbeta {num('fbeta_tuned')}, "
                 f"precision {num('precision_tuned')}, recall {num('recall_tuned')}")
    return text
