"""``lenshpc stack --images-dir ROOT``: class folders of PNG/JPEG/FITS → a labelled dataset (lenshpc.data.stack_images).

The images are made here with Pillow (a declared dependency) and astropy.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lenshpc.cli import main
from lenshpc.data.format import open_dataset
from lenshpc.data.stack_images import LUMA, read_grey, stack_image_folders
from lenshpc.errors import DataError, UserError


def _tree(root, n=4, size=(24, 20)):
    """ROOT/lens: grey 8-bit PNGs and one RGB JPEG; ROOT/nonlens: 16-bit PNGs and one FITS; returns the arrays."""
    from astropy.io import fits

    rng = np.random.default_rng(0)
    made = {}
    (root / "lens").mkdir(parents=True)
    (root / "nonlens").mkdir()
    for i in range(n):
        grey = rng.integers(0, 256, size[::-1], dtype=np.uint8)
        Image.fromarray(grey).save(root / "lens" / f"l{i}.png")
        made[f"lens/l{i}"] = grey.astype(float)
        deep = rng.integers(0, 65536, size[::-1]).astype(np.uint16)
        Image.fromarray(deep).save(root / "nonlens" / f"n{i}.png")
        made[f"nonlens/n{i}"] = deep.astype(float)
    rgb = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "lens" / "colour.jpg", quality=95)
    made["lens/colour"] = np.asarray(Image.open(root / "lens" / "colour.jpg"), dtype=float) @ LUMA
    data = rng.normal(0, 1, size[::-1]).astype(np.float32)
    fits.PrimaryHDU(data).writeto(root / "nonlens" / "f.fits")
    made["nonlens/f"] = data.astype(float)
    (root / "lens" / "notes.txt").write_text("not an image")  # ignored
    return made


def test_class_folders_become_a_labelled_dataset(tmp_path):
    made = _tree(tmp_path / "set")
    out = tmp_path / "pre.h5"
    assert main(["stack", "--images-dir", str(tmp_path / "set"), "--out", str(out), "--bands", "r"]) == 0
    with open_dataset(out) as ds:
        assert ds.kind == "labelled" and ds.has_labels and len(ds) == 10
        meta, images, labels = ds.meta("images"), ds.read("images"), ds.read("labels")
        assert images.shape == (10, 20, 24, 1) and list(ds.attrs["bands"]) == ["r"]
        for k, ident in enumerate(meta["id"]):
            np.testing.assert_allclose(images[k, :, :, 0], made[ident], rtol=1e-6, atol=1e-4)
            assert labels[k] == (1 if ident.startswith("lens/") else 0) and meta["class"][k] == ident.split("/")[0]
        assert ds.attrs["provenance"]["classes"] == {"lens": 1, "nonlens": 0}
        assert ds.attrs["provenance"]["mode"] == "image_folders"
        assert sum(len(ds.split("images", s)) for s in ("train", "val", "test")) == 10


def test_explicit_classes_resize_and_grey_rule(tmp_path):
    root = tmp_path / "set"
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    colour = np.zeros((30, 40, 4), np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2], colour[..., 3] = 200, 100, 50, 7  # alpha is dropped
    Image.fromarray(colour, "RGBA").save(root / "cats" / "a.png")
    np.testing.assert_allclose(read_grey(root / "cats" / "a.png"), 0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    Image.fromarray(np.full((16, 16), 9, np.uint8)).save(root / "dogs" / "b.png")
    with pytest.raises(UserError, match="cannot tell the label.*--classes"):
        stack_image_folders(tmp_path / "x.h5", root)
    with pytest.raises(DataError, match=r"differ in size \(30×40: 1, 16×16: 1.*--resize"):
        stack_image_folders(tmp_path / "x.h5", root, classes={"cats": 1, "dogs": 0})
    info = stack_image_folders(tmp_path / "ok.h5", root, classes={"cats": 1, "dogs": 0}, resize=32)
    assert info["shape"] == (32, 32, 1) and info["counts"] == {"cats": 1, "dogs": 1}
    with open_dataset(tmp_path / "ok.h5") as ds:
        images = ds.read("images")
        np.testing.assert_allclose(images[ds.meta("images")["class"] == "dogs"], 9.0, atol=1e-4)
    assert not (tmp_path / "x.h5").exists()


def test_bad_inputs_write_nothing(tmp_path, capsys):
    root = tmp_path / "set"
    _tree(root, n=2)
    (root / "lens" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "bad.h5"
    assert main(["stack", "--images-dir", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken.png: unreadable image file" in err and "--skip-bad" in err and not out.exists()
    assert main(["stack", "--images-dir", str(root), "--out", str(out), "--skip-bad"]) == 0
    with open_dataset(out) as ds:
        assert len(ds) == 6 and any("broken.png" in line for line in ds.logs()["skipped"])
    (root / "empty").mkdir()
    assert main(["stack", "--images-dir", str(root), "--out", str(tmp_path / "e.h5"),
                 "--classes", "lens=1,nonlens=0,empty=0"]) == 2
    assert "empty hold no PNG/JPEG/FITS images" in capsys.readouterr().err
    assert main(["stack", "--images-dir", str(root), "--out", str(tmp_path / "e.h5"), "--classes", "lens=1"]) == 2
    assert "not in --classes" in capsys.readouterr().err
    assert main(["stack", "--images-dir", str(root), "--out", str(tmp_path / "e.h5"), "--classes", "lens=2"]) == 2
    assert main(["stack", "--images-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "e.h5")]) == 2
    assert main(["stack", "--images-dir", str(root), "--images", str(root), "--out", str(tmp_path / "e.h5")]) == 2
    assert not (tmp_path / "e.h5").exists()


def test_rerun_with_the_same_folder_options_skips_and_other_options_are_refused(tmp_path, capsys):
    _tree(tmp_path / "set")
    out = tmp_path / "pre.h5"
    args = ["stack", "--images-dir", str(tmp_path / "set"), "--out", str(out)]
    assert main(args) == 0
    mtime = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out and out.stat().st_mtime_ns == mtime
    assert main([*args, "--resize", "16"]) == 2  # another request: refused, the file kept
    assert "resize: None -> 16" in capsys.readouterr().err and out.stat().st_mtime_ns == mtime
    assert main([*args, "--resize", "16", "--force"]) == 0 and "wrote" in capsys.readouterr().out
