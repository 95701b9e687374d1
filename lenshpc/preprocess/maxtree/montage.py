"""The before/after figure of the segmentation (thesis Fig 5.19), with what each stage removes.

One row per example image (the first mock lenses of the pool, or the first images of a
labelled dataset), four columns:

1. the input (normalised, √-stretched) the network would see without segmentation;
2. the tree-filtered 8-bit image times the distance decay (what the flood works on);
3. the input with the pixels the *tree* removed in blue and those the *flood* removed in red
   (thesis default ``corner`` flood: red is where faint arc light is lost);
4. the output: original pixels inside the final mask, 0 outside.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np



def montage_figure(images: np.ndarray, params, titles: list[str] | None = None):
    """A matplotlib figure for ``images`` ``(n, H, W[, C])`` segmented with ``params``."""
    from lenshpc.preprocess.maxtree.segmentation import segment_steps
    from lenshpc.report.plots import pyplot

    plt = pyplot()

    steps = segment_steps(images, params)
    plane = np.asarray(images, dtype=np.float32)
    plane = plane.mean(axis=-1) if plane.ndim == 4 else plane
    n = len(plane)
    fig, axes = plt.subplots(n, 4, figsize=(8.8, 2.3 * n + 0.4), squeeze=False)
    heads = ["input", "tree filter × decay", f"removed: tree (blue), flood '{params.flood}' (red)", "output"]
    for i in range(n):
        x = plane[i]
        removed_by_tree = ~steps.tree_mask[i]
        removed_by_flood = steps.tree_mask[i] & ~steps.mask[i]
        rgb = np.repeat(x[..., None] / max(float(x.max()), 1e-12), 3, axis=-1)
        rgb[removed_by_tree] = rgb[removed_by_tree] * [0.35, 0.35, 1.0]
        rgb[removed_by_flood] = rgb[removed_by_flood] * [1.0, 0.25, 0.25] + [0.35, 0, 0]
        panels = [(x, "gray"), (steps.weighted[i], "magma"), (np.clip(rgb, 0, 1), None),
                  (steps.output[i].mean(axis=-1), "gray")]
        for j, (img, cmap) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap=cmap, origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j], fontsize=8)
        kept = steps.mask[i].mean()
        axes[i, 0].set_ylabel((titles[i] + "\n" if titles else "") + f"kept {kept:.0%}", fontsize=7)
    fig.suptitle("Max-Tree segmentation (thesis Sec 4.7, Fig 5.19): before / after", fontsize=9)
    fig.tight_layout()
    return fig


def write_montage(images, params, titles: list[str], path: str | Path) -> Path:
    """Write the before/after montage of ``images`` (one row each, ``titles``) segmented with ``params``."""
    from lenshpc.report.plots import save_png

    return save_png(montage_figure(images, params, titles), path)
