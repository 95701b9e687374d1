"""The ``autoencode`` task: train the 21-cm study's convolutional autoencoder (seed 003, Sec 2.2).

The targets are the inputs (the source's ``y`` is the slice itself), the loss is the mean squared error and the
metric is the validation/test MSE (in units of the normalised slice).  Data and augmentation are the
``cosmo21cm`` task's (:class:`lenshpc.data.slice_source.SliceSource`; chunks stay class-balanced over
``target``, so every redshift / escape fraction is reconstructed equally often).  The model must map a slice to a
slice (``model.name: autoencoder21``).  A trained run is the encoder a classifier starts from:
``train.start_from: RUN_DIR`` + ``train.freeze: ["enc_*"]`` with ``model.name: cnn21`` (same encoder layers).

Run-dir extras: ``predictions.h5`` holds each test slice's MSE (``scores``) and class (``labels``, −1 if unknown);
``reconstructions.png`` shows test slices beside their reconstructions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lenshpc.errors import ConfigError
from lenshpc.tasks.base import Metric
from lenshpc.tasks.cosmo21cm import _SliceTask

FIGURE = "reconstructions.png"
#: Test slices shown in the reconstruction figure.
N_SHOWN = 6


def per_slice_mse(y: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Mean squared error of each slice (the one place of the formula)."""
    diff = np.asarray(out, np.float64).reshape(len(y), -1) - np.asarray(y, np.float64).reshape(len(y), -1)
    return (diff ** 2).mean(axis=1)


class AutoencodeTask(_SliceTask):
    """The convolutional autoencoder (module docstring)."""

    name = "autoencode"
    description = "train the 21-cm convolutional autoencoder (seed 003; MSE, targets = inputs)"
    metrics = (Metric("mse", False, "MSE", per_chunk=True, required=True),
               Metric("mae", False, "MAE"))
    losses = ("mse",)
    params = {"target": "redshift", "normalisation": "global", "mk_scale": 20.0, "crop": 0,
              "augment": ["roll", "rot90", "flip"], "allow_slice_split": False}
    labels_kind = "image"

    def num_outputs(self) -> int:
        return 1

    def head(self):
        from lenshpc.models.cosmo21cm import decoder

        return decoder

    def build_model(self, input_shape: tuple[int, ...]):
        """The encoder backbone's feature map (``pooling=None``) + :meth:`head`, the seed's mirrored decoder."""
        from lenshpc import models

        if self.cfg.model.name != "autoencoder21":
            raise ConfigError(f"task 'autoencode' trains model 'autoencoder21' (an encoder backbone with a decoder "
                              f"head), got model.name = {self.cfg.model.name!r}")
        return models.build("autoencoder21", tuple(input_shape), head=self.head(), pooling=None,
                            **self.cfg.model.params)

    def loss(self):
        import keras

        def mse(targets, outputs):
            return keras.ops.mean(keras.ops.square(outputs - targets))

        return mse

    def target_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(image_shape)

    def outputs(self, predict, x: np.ndarray) -> np.ndarray:
        return np.asarray(predict(x), dtype=np.float32).reshape(x.shape)

    def chunk_metrics(self, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
        mse = float(per_slice_mse(y, out).mean())
        return {"val_loss": mse, "val_mse": mse}

    def summary(self, y: np.ndarray, out: np.ndarray, *, val=None) -> dict:
        result = {"mse": float(per_slice_mse(y, out).mean()),
                  "mae": float(np.abs(np.asarray(out, np.float64) - np.asarray(y, np.float64)).mean()),
                  "seed": int(self.cfg.seed), "n_test": int(len(y))}
        if val is not None:
            result["val"] = {"mse": float(per_slice_mse(*val).mean())}
        return result

    def predictions(self, out: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Each slice's MSE (``scores``; the reconstructions would be as large as the set) and class (``labels``)."""
        return {"scores": per_slice_mse(y, out).astype(np.float32), "labels": self._labels_of(y)}

    def _labels_of(self, images: np.ndarray) -> np.ndarray:
        """The classes of a fixed set given by its images (``y`` of this task is the slice itself)."""
        source = self._info()
        for x, _, meta in (source.test(), source.validation_set()):  # the source's cached sets: no second read
            if x is images or (x.shape == images.shape and np.array_equal(x, images)):
                return meta["label"]
        return np.full(len(images), -1, dtype=np.int64)

    def write_extra_files(self, run_dir, result: dict) -> None:
        """``reconstructions.png``: test slices, one class after the other (top), and their reconstructions (bottom)."""
        from lenshpc.report.plots import pyplot, save_png
        from lenshpc.train.evaluate import load_model

        source = self._info()
        x, _, meta = source.test()
        labels = np.asarray(meta["label"])
        # round-robin over the classes, so every redshift / escape fraction is shown
        by_class = [np.flatnonzero(labels == k) for k in np.unique(labels)]
        rows = [int(idx[i]) for i in range(max(map(len, by_class))) for idx in by_class if i < len(idx)][:N_SHOWN]
        x, meta = x[rows], {"label": labels[rows]}
        model = load_model(Path(run_dir) / "model.keras")
        recon = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
        plt = pyplot()
        fig, axes = plt.subplots(2, len(x), figsize=(1.8 * len(x), 3.9), squeeze=False)
        for i in range(len(x)):
            lo, hi = float(x[i].min()), float(x[i].max())
            for row, img in ((0, x[i]), (1, recon[i])):
                axes[row, i].imshow(img[..., 0], vmin=lo, vmax=hi, cmap="magma")
                axes[row, i].set_xticks([])
                axes[row, i].set_yticks([])
            axes[0, i].set_title(source.class_names[int(meta["label"][i])], fontsize=7)
            axes[1, i].set_xlabel(f"MSE {per_slice_mse(x[i:i + 1], recon[i:i + 1])[0]:.3g}", fontsize=7)
        axes[0, 0].set_ylabel("test slice", fontsize=8)
        axes[1, 0].set_ylabel("reconstruction", fontsize=8)
        fig.suptitle(f"autoencoder reconstructions (test MSE {result.get('mse', float('nan')):.4g})", fontsize=9)
        save_png(fig, Path(run_dir) / FIGURE, tight=True)

    @classmethod
    def report_sections(cls, groups: Mapping[str, Sequence], out_dir) -> list[str]:
        lines = []
        for name, runs in groups.items():
            figs = [Path(r.path) / FIGURE for r in runs if (Path(r.path) / FIGURE).is_file()]
            if figs:
                lines += ["", f"### Autoencoder reconstructions: {name}", "", f"![reconstructions]({figs[0]})"]
        return lines
