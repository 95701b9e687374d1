"""``lenshpc inspect RANK_DIR``: the static inspection page, driven in a real headless Chromium (Selenium).

Chromium and its driver are Debian's ``chromium`` + ``chromium-driver`` (installed by tests/setup.sh); Selenium is
in the ``test`` extra.  The ranking is a real ``lenshpc rank`` of a mock survey (with RA/Dec columns added) by a
tiny_sweep model.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from lenshpc.cli import main
from lenshpc.data.format import open_dataset, write_labelled
from lenshpc.data.survey import mock_survey

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def rank_dir(tiny_sweep, analysis_population, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inspect")
    mock_survey(analysis_population, root / "plain.h5", n_tracers=6, alpha_min=0.3, alpha_max=0.8, seed=2)
    with open_dataset(root / "plain.h5") as ds:
        images, meta = ds.read("images"), ds.meta("images")
        attrs = dict(ds.attrs)
    n = len(images)
    ra = np.linspace(150.0, 150.2, n)  # COSMOS-like field; one row without coordinates
    dec = np.linspace(2.1, 2.3, n)
    ra[-1] = np.nan
    ids = meta.pop("id")
    write_labelled(root / "survey.h5", images, None, ids=ids, meta={**meta, "RA": ra, "Dec": dec},
                   pixel_scale=float(attrs["pixel_scale"]), bands=list(attrs["bands"]))
    out = root / "rank"
    assert main(["rank", str(tiny_sweep / "bce" / "seed0"), str(root / "survey.h5"), "--out", str(out),
                 "--tracers", "is_tracer", "--top", "0"]) == 0
    return out


def _ranked_ids(rank_dir: Path) -> list[str]:
    with open(rank_dir / "ranked.csv", newline="") as fh:
        return [row["id"] for row in csv.DictReader(fh)]


def _chromium(tmp_path: Path, downloads: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


@pytest.mark.timeout(240)
def test_page_labels_three_cutouts_from_the_keyboard_and_exports_labels_csv(rank_dir, tmp_path):
    if not (CHROMIUM and DRIVER):  # CI must really run the browser test (tests/setup.sh installs them as root)
        reason = "needs Debian's chromium + chromium-driver (bash tests/setup.sh)"
        pytest.fail(f"CI: {reason}") if os.environ.get("CI", "").lower() == "true" else pytest.skip(reason)
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page = tmp_path / "page.html"
    assert main(["inspect", str(rank_dir), "--top", "12", "--out", str(page)]) == 0
    ids = _ranked_ids(rank_dir)[:12]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _chromium(tmp_path, downloads)
    try:
        driver.get(page.as_uri())
        cells = driver.find_elements(By.CSS_SELECTOR, "#grid .cell")
        assert len(cells) == 12
        assert ids[0] in cells[0].text and "#1 " in cells[0].text and "score" in cells[0].text
        # RA/Dec in sexagesimal (astropy) on the captions, where the catalogue has them
        texts = [c.text for c in cells]
        assert sum(":" in t.split("score")[1] for t in texts) >= 11
        keys = ActionChains(driver)
        # 1 = lens (advances), j = skip one, 2 = maybe, → then n = non-lens
        keys.send_keys("1").send_keys("j").send_keys("2").send_keys(Keys.ARROW_RIGHT).send_keys("n").perform()
        expected = f"id,label\n{ids[0]},lens\n{ids[2]},maybe\n{ids[4]},non-lens\n"
        assert driver.find_element(By.ID, "labels-csv").get_attribute("value") == expected
        assert "3 of 12 labelled" in driver.find_element(By.ID, "count").text
        # the stretch is applied in the browser on the raw pixels: the drawn canvas changes
        probe = ("const c=document.querySelector('#cell-0 canvas');"
                 "return Array.from(c.getContext('2d').getImageData(0,0,c.width,c.height).data.filter((_, i) => i % 4 == 0));")
        asinh = driver.execute_script(probe)
        Select(driver.find_element(By.ID, "stretch")).select_by_value("linear")
        linear = driver.execute_script(probe)
        assert len(asinh) == 64 * 64 and asinh != linear and np.mean(asinh) > np.mean(linear)
        driver.save_screenshot(str(tmp_path / "inspect.png"))
        # the real download
        driver.find_element(By.ID, "export").click()
        target = downloads / "labels.csv"
        for _ in range(100):
            if target.is_file() and not list(downloads.glob("*.crdownload")):
                break
            time.sleep(0.1)
        assert target.read_text() == expected
        # labels survive a reload (localStorage)
        driver.refresh()
        assert "3 of 12 labelled" in driver.find_element(By.ID, "count").text
        assert driver.find_element(By.ID, "labels-csv").get_attribute("value") == expected
    finally:
        driver.quit()
    assert (tmp_path / "inspect.png").stat().st_size > 10_000


def test_inspect_refuses_bad_rank_dirs(rank_dir, tmp_path, capsys):
    n = len(_ranked_ids(rank_dir))
    assert main(["inspect", str(rank_dir), "--top", str(n + 1), "--out", str(tmp_path / "a.html")]) == 2
    assert f"the ranking has {n} cutouts" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path), "--out", str(tmp_path / "a.html")]) == 2
    assert "no ranked.csv" in capsys.readouterr().err
    moved = tmp_path / "moved"
    shutil.copytree(rank_dir, moved)
    text = (moved / "rank.json").read_text().replace("survey.h5", "gone.h5")
    (moved / "rank.json").write_text(text)
    assert main(["inspect", str(moved), "--out", str(tmp_path / "a.html")]) == 2
    err = capsys.readouterr().err
    assert "gone.h5" in err and "is gone" in err
    assert not (tmp_path / "a.html").exists()
    # the default: every cutout when fewer than 100, next to the ranking
    assert main(["inspect", str(rank_dir)]) == 0
    assert (rank_dir / "inspect.html").is_file()
