"""Grad-CAM heatmaps of a trained lens finder (thesis Sec 3.7, Eq 3.24–3.25) and Fig 5.3-style panels.

For a class ``c`` (for a sigmoid lens finder: *lens*), a convolutional layer with feature maps
``A^k`` (``k`` = channel) and the model's **pre-activation** output ``y^c`` (the Dense layer
``logits``, before the sigmoid/softmax ``prediction``)::

    α_k = 1/Z Σ_ij ∂y^c / ∂A^k_ij            (Eq 3.24, Z = number of pixels of the map)
    L   = ReLU(Σ_k α_k A^k)                   (Eq 3.25)

:class:`GradCAM` computes it for a batch and several layers from ONE traced ``tf.function``
(docs/gradcam.md says why and how; it also covers the display choices and the files
:func:`run_gradcam`, the ``lenshpc gradcam`` command, writes).  TensorFlow, Keras and
matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lenshpc.analysis.inspect import SUMMARY_JSON, current_summary
from lenshpc.errors import DataError, UserError
from lenshpc.train.rundir import PREDICTIONS_FILE, read_predictions, run_normaliser
from lenshpc.utils import atomic_path, atomic_write_json, progress, rng_for

log = logging.getLogger("lenshpc.analysis.inspect.gradcam")

#: Confusion-matrix cases in the order panels and summaries list them.
CASES = ("tp", "fp", "fn", "tn")
#: Heatmap layers chosen by default (the thesis visualised four ResNet18 additions).
DEFAULT_NUM_LAYERS = 4
#: Images per compiled Grad-CAM call.
DEFAULT_BATCH = 64
#: Format version of ``heatmaps.h5`` / ``summary.json`` (bump on incompatible changes).
FORMAT_VERSION = 1
#: A stored score and the model's recomputed score may differ by float noise; more is reported.
SCORE_TOLERANCE = 1e-3

_ADD_RE = re.compile(r"^add_(\d+)$")


# ====================================================================== layers
def spatial_layers(model: Any) -> list[str]:
    """Names of the layers of ``model`` whose output is a feature map ``(batch, h, w, k)``, in network order."""
    names = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer used several times / no single output
            continue
        if len(shape) == 4 and layer.name != "image":
            names.append(layer.name)
    return names


def default_layers(model: Any, n: int = DEFAULT_NUM_LAYERS) -> list[str]:
    """The last ``n`` residual additions ``add_<i>`` of ``model`` (or as many as exist).

    ResNet18 → ``add_5 … add_8`` (the thesis's ``add_4 … add_7``: Keras's automatic names counted
    from ``add``; see :mod:`lenshpc.models.resnet`), tiny_resnet → ``add_1 … add_3``.  A model
    without such layers (EfficientNet, the challenge CNNs) gets its last ``n`` ``Conv2D`` layers
    with a feature map larger than 1×1 (excludes squeeze-and-excitation convolutions).
    """
    import keras

    adds = sorted((int(m.group(1)), layer.name) for layer in model.layers if (m := _ADD_RE.match(layer.name)))
    if adds:
        return [name for _, name in adds[-n:]]
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
             and len(shape := layer.output.shape) == 4 and (shape[1] or 2) * (shape[2] or 2) > 1]
    if not convs:
        raise UserError(f"model '{model.name}' has no add_<i> or Conv2D layers to target; pass --layers with "
                        f"layer names that output feature maps: {', '.join(spatial_layers(model)) or 'none'}")
    return convs[-n:]


def resolve_layers(model: Any, layers: Sequence[str] | None) -> list[str]:
    """Validate requested layer names (None → :func:`default_layers`); unknown or non-spatial → UserError."""
    if layers is None:
        return default_layers(model)
    layers = [str(name).strip() for name in layers if str(name).strip()]
    if not layers:
        raise UserError("no Grad-CAM layer given; pass e.g. --layers add_5,add_6 (or omit --layers for the default)")
    valid = spatial_layers(model)
    bad = [name for name in layers if name not in valid]
    if bad:
        from lenshpc.utils import did_you_mean

        hint = "".join(did_you_mean(b, valid, cutoff=0.5, template=f" ('{b}': did you mean '{{}}'?)") for b in bad)
        raise UserError(f"model '{model.name}' has no feature-map layer {', '.join(repr(b) for b in bad)}{hint}. "
                        f"Valid layers (network order): {', '.join(valid)}")
    if len(set(layers)) != len(layers):
        raise UserError(f"--layers lists a layer twice: {','.join(layers)}")
    return layers


# ====================================================================== Grad-CAM
@dataclass
class GradCAMResult:
    """Output of :meth:`GradCAM.compute` for ``N`` images.

    Attributes
    ----------
    logits : ndarray (N,)
        ``y^c``, the pre-activation output of class ``c``.
    scores : ndarray (N,)
        The model's output (``prediction`` layer) for class ``c``: the lens probability.
    heatmaps : dict
        Layer name → ``(N, h, w)`` float32 Grad-CAM maps at the layer's native size (Eq 3.25).
    """

    logits: np.ndarray
    scores: np.ndarray
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)


class GradCAM:
    """Grad-CAM (Eq 3.24–3.25) of several layers of a Keras model from one compiled function.

    Parameters
    ----------
    model : keras.Model
        A lenshpc model (a Dense layer ``logits`` followed by the activation ``prediction``).
    layers : sequence of str, optional
        Layers to explain (feature maps ``(h, w, k)``); default :func:`default_layers`.
    class_index : int
        Class ``c``: column of ``logits``.  A sigmoid lens finder has one column (0 = lens).

    Raises
    ------
    UserError
        Unknown or non-spatial layer (the message lists the valid ones), no ``logits`` layer, or a
        class index outside the logits.
    """

    def __init__(self, model: Any, layers: Sequence[str] | None = None, *, class_index: int = 0):
        import keras
        import tensorflow as tf

        self.model = model
        self.layers = resolve_layers(model, layers)
        try:
            logits_layer = model.get_layer("logits")
        except ValueError:
            raise UserError(f"model '{model.name}' has no Dense layer named 'logits' (every lenshpc model has one); "
                            "Grad-CAM needs the pre-activation output y^c") from None
        n_classes = int(logits_layer.output.shape[-1])
        if not 0 <= int(class_index) < n_classes:
            raise UserError(f"class index {class_index} is outside the model's {n_classes} logit column(s)")
        self.class_index = int(class_index)
        self.input_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        self.shapes = {name: tuple(int(s) for s in model.get_layer(name).output.shape[1:3]) for name in self.layers}
        # One functional view of the same weights: the requested feature maps, the logits and the output.
        outputs = [model.get_layer(name).output for name in self.layers] + [logits_layer.output, model.outputs[0]]
        if len(model.inputs) != 1:
            raise UserError(f"model '{model.name}' has {len(model.inputs)} inputs; Grad-CAM here explains single-input models")
        # A single tensor (not a one-element list) as input: Keras warns when a list-input model gets a tensor.
        self._features = keras.Model(model.inputs[0], outputs, name=f"{model.name}_gradcam")
        c = self.class_index
        nl = len(self.layers)

        def gradcam(x):
            with tf.GradientTape() as tape:
                out = self._features(x, training=False)
                acts, logits, probs = out[:nl], out[nl], out[nl + 1]
                y = tf.cast(logits[:, c], tf.float32)
            # Σ over the batch: images do not interact in inference mode, so each image gets its own ∂y/∂A.
            grads = tape.gradient(y, acts)
            maps = []
            for a, g in zip(acts, grads):
                a = tf.cast(a, tf.float32)
                alpha = tf.reduce_mean(tf.cast(g, tf.float32), axis=(1, 2))          # Eq 3.24: (B, K)
                maps.append(tf.nn.relu(tf.einsum("bhwk,bk->bhw", a, alpha)))       # Eq 3.25: (B, h, w)
            return y, tf.cast(probs[:, c], tf.float32), maps

        spec = tf.TensorSpec([None, *self.input_shape], tf.float32, name="images")
        self._fn = tf.function(gradcam, input_signature=[spec], reduce_retracing=False)

    @property
    def tracing_count(self) -> int:
        """How often the compiled function was traced (1 after the first call, whatever the batches)."""
        return int(self._fn.experimental_get_tracing_count())

    def compute(self, images: np.ndarray, batch_size: int = DEFAULT_BATCH, *, show_progress: bool = False,
                desc: str = "grad-cam") -> GradCAMResult:
        """Logits, scores and heatmaps of every layer for ``images`` ``(N, H, W, C)``.

        Images must be prepared as the network saw them in training (the chunk engine's test set is).
        """
        import tensorflow as tf

        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 3 and len(self.input_shape) == 3:
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise DataError(f"images of shape {x.shape[1:]} do not fit the model's input {self.input_shape}")
        if batch_size < 1:
            raise UserError(f"batch size must be ≥ 1, got {batch_size}")
        logits, scores = [], []
        maps: dict[str, list[np.ndarray]] = {name: [] for name in self.layers}
        bar = progress(total=len(x), desc=desc, unit="img", disable=None if show_progress else True)
        try:
            for start in range(0, len(x), batch_size):
                y, p, hm = self._fn(tf.constant(x[start:start + batch_size]))
                logits.append(y.numpy())
                scores.append(p.numpy())
                for name, m in zip(self.layers, hm):
                    maps[name].append(m.numpy())
                bar.update(min(batch_size, len(x) - start))
        finally:
            bar.close()
        empty = np.empty(0, np.float32)
        return GradCAMResult(
            logits=np.concatenate(logits) if logits else empty,
            scores=np.concatenate(scores) if scores else empty,
            heatmaps={name: (np.concatenate(v) if v else np.empty((0, *self.shapes[name]), np.float32))
                      for name, v in maps.items()},
        )

    __call__ = compute


# ====================================================================== display helpers
def upscale_nearest(heatmaps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upscaling of ``(..., h, w)`` maps to ``(..., H, W)``.

    Not bicubic: smoothing a coarse map (4×4 for ResNet18's ``add_8``) invents peaks between its
    cells (docs/gradcam.md, Display).  Output pixel ``i`` takes cell ``floor(i·h/H)``.
    """
    heatmaps = np.asarray(heatmaps)
    h, w = heatmaps.shape[-2:]
    big_h, big_w = int(size[0]), int(size[1])
    rows = (np.arange(big_h) * h) // big_h
    cols = (np.arange(big_w) * w) // big_w
    return heatmaps[..., rows[:, None], cols[None, :]]


def display_normalise(heatmaps: np.ndarray) -> np.ndarray:
    """Scale each map of ``(..., h, w)`` by its own maximum to ``[0, 1]`` (an all-zero map stays zero).

    Not min-max: 0 stays "no evidence" (maps are ≥ 0 after the ReLU), so an empty map looks empty.
    """
    h = np.asarray(heatmaps, dtype=np.float32)
    peak = h.max(axis=(-2, -1), keepdims=True) if h.size else h
    safe = np.where(peak > 0, peak, np.float32(1))
    return np.where(peak > 0, h / safe, np.float32(0)).astype(np.float32)


def display_image(image: np.ndarray) -> np.ndarray:
    """An ``(H, W, C)`` image as one ``(H, W)`` plane in ``[0, 1]`` (mean over bands, min-max normalised)."""
    plane = np.asarray(image, dtype=np.float32)
    if plane.ndim == 3:
        plane = plane.mean(axis=-1)
    lo, hi = float(plane.min()), float(plane.max())
    return (plane - lo) / (hi - lo) if hi > lo else np.zeros_like(plane)


def overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """RGB overlay of thesis Fig 5.3 (c): R = input (normalised), G = 0, B = heatmap (upscaled, normalised).

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, C)
    heatmap : ndarray (h, w)
        Raw or normalised; it is upscaled (nearest) and scaled by its maximum here.

    Returns
    -------
    ndarray (H, W, 3) float32 in [0, 1]
    """
    red = display_image(image)
    blue = display_normalise(upscale_nearest(heatmap, red.shape))
    return np.stack([red, np.zeros_like(red), blue], axis=-1).astype(np.float32)


# ====================================================================== case selection
def case_of(labels: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Case name per row (``tp``/``fp``/``fn``/``tn``); positive prediction iff score ≥ threshold
    (the rule of :func:`lenshpc.metrics.confusion`)."""
    labels = np.asarray(labels).reshape(-1) == 1
    pred = np.asarray(scores).reshape(-1) >= threshold
    return np.asarray(CASES)[2 * ~pred + ~labels]  # CASES order: tp, fp, fn, tn


def select_cases(labels: np.ndarray, scores: np.ndarray, threshold: float, cases: Iterable[str] = CASES,
                 n: int = 4, seed: int | None = None) -> dict[str, np.ndarray]:
    """Pick up to ``n`` test rows per case, deterministically.

    Without ``seed``: the most confident first — TP and FP by descending score (the model's
    strongest lens calls, right and wrong), FN and TN by ascending score (its strongest
    rejections); ties by test index.  With ``seed``: a uniform random sample without replacement
    from ``rng_for(seed, "gradcam", case)``, listed in test order (the same seed gives the same
    images on every machine).  A case with fewer than ``n`` members gives all of them (possibly none).

    Returns
    -------
    dict
        case → int64 test indices (in display order).
    """
    cases = list(cases)
    bad = [c for c in cases if c not in CASES]
    if bad:
        raise UserError(f"unknown case(s) {', '.join(bad)}; choose from {', '.join(CASES)}")
    if n < 1:
        raise UserError(f"--n must be ≥ 1 (images per case), got {n}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    kinds = case_of(labels, scores, threshold)
    chosen: dict[str, np.ndarray] = {}
    for case in cases:
        members = np.flatnonzero(kinds == case)
        if seed is not None:
            pick = rng_for(int(seed), "gradcam", case).choice(len(members), size=min(n, len(members)), replace=False)
            chosen[case] = np.sort(members[pick]).astype(np.int64)
        else:
            key = -scores[members] if case in ("tp", "fp") else scores[members]
            order = np.lexsort((members, key))  # primary: confidence, secondary: test index
            chosen[case] = members[order[:n]].astype(np.int64)
    return chosen


# ====================================================================== plotting
def plot_panel(path: str | os.PathLike, images: np.ndarray, heatmaps: Mapping[str, np.ndarray],
               row_titles: Sequence[str], title: str | None = None) -> Path:
    """Write a PNG of Fig 5.3 panels: one row per image, columns input | heatmap per layer | overlay per layer.

    Parameters
    ----------
    images : ndarray (R, H, W, C)
    heatmaps : dict
        layer → ``(R, h, w)`` raw heatmaps (upscaled nearest and scaled per map here).
    row_titles : sequence of str
        One caption per row (score, label, case, …).
    title : str, optional
        Figure title.
    """
    from lenshpc.report.plots import pyplot, save_png

    plt = pyplot()
    layers = list(heatmaps)
    rows, cols = len(images), 1 + 2 * len(layers)
    fig, axes = plt.subplots(rows, cols, figsize=(1.75 * cols, 2.4 * rows + (0.35 if title else 0)), squeeze=False)
    for r in range(rows):
        plane = display_image(images[r])
        ax = axes[r, 0]
        ax.imshow(plane, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(row_titles[r], fontsize=7, loc="left")
        for j, name in enumerate(layers):
            raw = heatmaps[name][r]
            shown = display_normalise(upscale_nearest(raw, plane.shape))
            peak = float(raw.max()) if raw.size else 0.0
            ax = axes[r, 1 + j]
            ax.imshow(shown, cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{name} {raw.shape[0]}×{raw.shape[1]}" + ("  (empty)" if peak <= 0 else f"  max {peak:.2g}"),
                         fontsize=7)
            ax = axes[r, 1 + len(layers) + j]
            ax.imshow(overlay(images[r], raw), interpolation="nearest")
            ax.set_title(f"overlay {name}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)


def _row_title(case: str, rank: int, index: int, score: float, label: int, meta: Mapping[str, np.ndarray]) -> str:
    text = f"{case.upper()} #{rank}  test {index}\nscore {score:.3f}  label {label}"
    extras = []
    for col, fmt in (("alpha", "α {:.3f}"), ("theta_E", "θE {:.2f}")):
        if col in meta:
            value = float(np.asarray(meta[col])[index])
            if np.isfinite(value):
                extras.append(fmt.format(value))
    return text + ("\n" + "  ".join(extras) if extras else "")


# ====================================================================== the command
def _load_test_set(cfg: Any, run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    from lenshpc.data.chunks import ChunkEngine

    with ChunkEngine(cfg, rank=0, size=1, load_train=False, normaliser=run_normaliser(run_dir)) as engine:
        x, y, meta = engine.test()
        return np.asarray(x), np.asarray(y).reshape(-1), dict(meta)


def run_gradcam(run_dir: str | os.PathLike, *, layers: Sequence[str] | None = None, cases: Sequence[str] = CASES,
                n: int = 4, out: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                threshold: float | None = None, seed: int | None = None, batch_size: int = DEFAULT_BATCH,
                class_index: int = 0, force: bool = False, show_progress: bool = True) -> dict:
    """Grad-CAM panels of TP/FP/FN/TN test images of a finished run (``lenshpc gradcam``).

    Parameters
    ----------
    run_dir : path
        A finished run directory (``config.yaml``, ``model.keras``, ``predictions.h5``, ``DONE``).
    layers : sequence of str, optional
        Layers to explain; default :func:`default_layers`.
    cases : sequence of {"tp", "fp", "fn", "tn"}
        Which confusion-matrix cases to show.
    n : int
        Images per case (fewer when a case has fewer members; an empty case is reported).
    out : path, optional
        Output root; files go to ``OUT/gradcam/`` (default ``OUT = run_dir``).
    data : path, optional
        Another dataset: its fixed test set is rebuilt and scored with the model (no
        ``predictions.h5`` needed).  Default: the run's own test set and stored scores.
    threshold : float, optional
        Decision threshold of the cases; default the run's ``selection.threshold``.
    seed : int, optional
        Random (seeded) choice of images per case instead of the most confident ones.
    batch_size : int
        Images per compiled Grad-CAM call.
    class_index : int
        Logit column ``c`` (0 for a sigmoid lens finder).
    force : bool
        Recompute even if ``summary.json`` says the same request is already done.

    Returns
    -------
    dict
        The written ``summary.json``.
    """
    from lenshpc.metrics import confusion
    from lenshpc.train.evaluate import load_model, open_run, predict_scores

    t0 = time.perf_counter()
    rd, cfg, data_path = open_run(run_dir, data, require_done=True)
    cases = list(dict.fromkeys(cases))
    if not cases or any(c not in CASES for c in cases):
        raise UserError(f"--cases {','.join(cases)}: choose one or more of {','.join(CASES)}")
    if n < 1:
        raise UserError(f"--n must be ≥ 1 (images per case), got {n}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")

    thr = float(cfg.selection.threshold if threshold is None else threshold)
    if not 0.0 <= thr <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {thr}")
    out_dir = Path(out if out is not None else rd.path) / "gradcam"

    model = load_model(rd.model)
    cam = GradCAM(model, layers, class_index=class_index)
    stat = rd.model.stat()
    request = {"format_version": FORMAT_VERSION, "run_dir": str(rd.path.resolve()), "data": str(data_path),
               "model_mtime_ns": stat.st_mtime_ns, "model_size": stat.st_size, "layers": cam.layers, "cases": cases,
               "n": int(n), "threshold": thr, "seed": seed, "class_index": class_index}
    previous = None if force else current_summary(out_dir, "request", request, "files",
                                                  "same run, layers, cases, n, threshold, seed")
    if previous is not None:
        return previous

    # --- the test set the run was scored on, and the scores that decide the cases
    log.info("rebuilding the fixed test set of %s (%s)", rd.path, data_path)
    x, y, meta = _load_test_set(cfg, rd.path)
    labels = (y >= 0.5).astype(np.uint8)
    if data is None and rd.predictions.is_file():
        pred = read_predictions(rd.predictions, "test")
        stored = np.asarray(pred["labels"]).reshape(-1).astype(np.uint8)
        if len(stored) != len(labels) or not np.array_equal(stored, labels):
            raise DataError(
                f"{rd.predictions} does not describe the rebuilt test set ({len(stored)} stored labels vs "
                f"{len(labels)} rebuilt, {int(np.sum(stored[:len(labels)] != labels[:len(stored)]))} differing): "
                f"{data_path} or the data config changed since the run. Re-score it with `lenshpc evaluate` and pass "
                "--data, or restore the original data file")
        scores = np.asarray(pred["scores"], dtype=np.float32).reshape(-1)
        meta = {**meta, **pred.get("meta", {})}
        score_source = PREDICTIONS_FILE
    else:  # --data, or a run whose predictions.h5 is gone: the selected model scores the rebuilt test set
        log.info("scoring %d test images of %s%s", len(x), data_path,
                 "" if data is not None else f" with {rd.model.name} ({rd.predictions.name} is missing)")
        scores = predict_scores(model, x)
        score_source = "model (--data)" if data is not None else "model (no predictions.h5)"

    chosen = select_cases(labels, scores, thr, cases, n, seed)
    counts = confusion(labels, scores, thr)
    missing = [c for c in cases if len(chosen[c]) == 0]
    short = {c: len(chosen[c]) for c in cases if 0 < len(chosen[c]) < n}
    for c in missing:
        log.warning("no %s in the test set at threshold %.3g: nothing to show for it", c.upper(), thr)
    for c, k in short.items():
        log.warning("only %d %s in the test set at threshold %.3g (asked for %d)", k, c.upper(), thr, n)

    run_name = "/".join(rd.path.resolve().parts[-2:])  # e.g. bce/seed0: the group and the seed
    rows = [(c, i, int(idx)) for c in cases for i, idx in enumerate(chosen[c])]
    index = np.array([r[2] for r in rows], dtype=np.int64)
    t_cam = time.perf_counter()
    result = cam.compute(x[index], batch_size, show_progress=show_progress)
    cam_seconds = time.perf_counter() - t_cam
    diff = float(np.max(np.abs(result.scores - scores[index]))) if len(index) else 0.0
    if diff > SCORE_TOLERANCE:
        log.warning("the model's scores differ from the stored ones by up to %.2g (another TensorFlow build or "
                    "hardware?); cases follow the stored scores", diff)

    # --- files: panels per image, an overview per case, heatmaps.h5, summary.json
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    captions = [_row_title(case, i, idx, float(scores[idx]), int(labels[idx]), meta) for case, i, idx in rows]
    panels = progress(rows, desc="panels", unit="img", disable=None if show_progress else True)
    for j, (case, i, idx) in enumerate(panels):
        title = (f"{case.upper()} #{i} (test index {idx}): score {scores[idx]:.4f}, label {labels[idx]}, "
                 f"threshold {thr:g} — {run_name}")
        plot_panel(out_dir / f"{case}_{i}.png", x[idx][None], {k: v[j:j + 1] for k, v in result.heatmaps.items()},
                   captions[j:j + 1], title=title)
        files.append(f"{case}_{i}.png")
    by_case = {case: [j for j, r in enumerate(rows) if r[0] == case] for case in cases}
    for case, sel in by_case.items():
        if sel:
            plot_panel(out_dir / f"{case}.png", x[index[sel]], {k: v[sel] for k, v in result.heatmaps.items()},
                       [captions[j] for j in sel], title=f"{case.upper()} at threshold {thr:g} — {run_name}")
            files.append(f"{case}.png")
    _remove_stale_panels(out_dir, set(files))
    _write_heatmaps(out_dir / "heatmaps.h5", x[index], result, scores[index], labels[index],
                    [r[0] for r in rows], [r[1] for r in rows], index, meta, cam, thr, rd.path, data_path)
    files.append("heatmaps.h5")

    per_case = {case: {"available": counts[case], "shown": len(sel), "test_index": index[sel].tolist(),
                       "scores": [float(scores[i]) for i in index[sel]],
                       "files": [f"{case}_{rows[j][1]}.png" for j in sel]} for case, sel in by_case.items()}
    summary = {
        "format_version": FORMAT_VERSION,
        "run_dir": str(rd.path), "model": str(model.name), "data": str(data_path), "scores_from": score_source,
        "threshold": thr, "class_index": cam.class_index, "n_test": int(len(labels)),
        "layers": {name: list(cam.shapes[name]) for name in cam.layers},
        "selection": ("random (seed %d)" % seed) if seed is not None else "most confident first",
        "cases": per_case, "missing_cases": missing, "short_cases": short,
        "max_score_difference": diff, "tracing_count": cam.tracing_count,
        "timings": {"gradcam_s": round(cam_seconds, 4), "total_s": round(time.perf_counter() - t0, 3),
                    "images": int(len(index)),
                    "images_per_s": round(len(index) / cam_seconds, 2) if cam_seconds > 0 and len(index) else None},
        "files": files, "request": request,
    }
    atomic_write_json(out_dir / SUMMARY_JSON, summary)
    log.info("grad-cam of %d test images (%s) → %s", len(index),
             ", ".join(f"{c} {per_case[c]['shown']}/{per_case[c]['available']}" for c in cases), out_dir)
    return summary


def _remove_stale_panels(out_dir: Path, keep: set[str]) -> None:
    """Delete panels of an earlier run with more images or other cases, so the folder matches summary.json."""
    pattern = re.compile(r"^(tp|fp|fn|tn)(_\d+)?\.png$")
    for path in out_dir.iterdir():
        if pattern.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)


def _write_heatmaps(path: Path, images: np.ndarray, result: GradCAMResult, scores: np.ndarray, labels: np.ndarray,
                    cases: list[str], ranks: list[int], index: np.ndarray, meta: Mapping[str, np.ndarray],
                    cam: GradCAM, threshold: float, run_dir: Path, data_path: Path) -> None:
    """``heatmaps.h5``: raw heatmaps per layer at native size plus everything needed to redraw a panel."""
    import h5py

    from lenshpc.data.format import create_h5

    with atomic_path(path) as tmp:
        with create_h5(tmp) as fh:
            fh.attrs.update({"format_version": FORMAT_VERSION, "run_dir": str(run_dir), "data": str(data_path),
                             "threshold": threshold, "class_index": cam.class_index,
                             "layers": json.dumps(cam.layers), "formula": "thesis Eq 3.24-3.25 on the logits"})
            fh.create_dataset("images", data=np.asarray(images, np.float32), compression="gzip")
            fh.create_dataset("scores", data=np.asarray(scores, np.float32))
            fh.create_dataset("model_scores", data=result.scores.astype(np.float32))
            fh.create_dataset("logits", data=result.logits.astype(np.float32))
            fh.create_dataset("labels", data=np.asarray(labels, np.uint8))
            fh.create_dataset("case", data=list(cases), dtype=h5py.string_dtype())
            fh.create_dataset("rank_in_case", data=np.asarray(ranks, np.int64))
            fh.create_dataset("test_index", data=np.asarray(index, np.int64))
            g = fh.create_group("heatmaps")
            for name in cam.layers:
                ds = g.create_dataset(name, data=result.heatmaps[name].astype(np.float32))
                ds.attrs["shape"] = cam.shapes[name]
            m = fh.create_group("meta")
            for col, values in meta.items():
                values = np.asarray(values)
                if values.ndim != 1 or len(values) <= (int(index.max()) if len(index) else -1):
                    continue
                picked = values[index]
                if picked.dtype.kind in "UO":
                    m.create_dataset(col, data=picked.astype(str).tolist(), dtype=h5py.string_dtype())
                else:
                    m.create_dataset(col, data=picked)


__all__ = ["CASES", "GradCAM", "GradCAMResult", "case_of", "default_layers", "display_normalise", "display_image",
           "overlay", "plot_panel", "resolve_layers", "run_gradcam", "select_cases", "spatial_layers",
           "upscale_nearest"]
