"""A static, self-contained HTML page for visual inspection of a ranking (``lenshpc inspect RANK_DIR``).

LensFlow's phase 3 (seed 004): people look at the top of the ranking on a grid and label what they see.  The page
is one HTML file (no server, no network: it opens from a cluster file system, or through
``python -m http.server``).  It embeds the top-N cutouts as raw float32 pixel arrays (base64; band 0 of
multi-band catalogues) and stretches them in the browser — linear, √, asinh or log of the per-cutout min–max
normalised pixels (the same normalisation as training, thesis Eq 4.1) — with each cutout's rank, score,
tracer flag and catalogue columns (RA/Dec also sexagesimal via ``astropy.coordinates`` when the catalogue has
them).  Labels (lens / maybe / non-lens) are typed on the keyboard, kept in the browser's ``localStorage`` and
exported as ``labels.csv`` with columns ``id,label`` (``lens|maybe|non-lens``), which
``lenshpc mine --labels labels.csv`` reads.  Keys: → / ↓ / j next, ← / ↑ / k previous, 1 / l lens,
2 / m maybe, 3 / n non-lens, 0 / Backspace clear, e export.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from pathlib import Path

import numpy as np

from lenshpc.errors import DataError, UserError
from lenshpc.utils import atomic_write_text

#: Default number of cutouts on the page.
DEFAULT_TOP = 100
#: The labels the page writes (labels.csv's ``label`` column) and their keys.
LABELS = ("lens", "maybe", "non-lens")
#: Stretches the page offers (first = default).
STRETCHES = ("asinh", "sqrt", "linear", "log")
#: Catalogue column names taken as RA / Dec in degrees (lower-cased).
RA_NAMES = ("ra", "ra_deg", "raj2000", "alpha_j2000", "ra_icrs")
DEC_NAMES = ("dec", "dec_deg", "dej2000", "decj2000", "delta_j2000", "de_icrs", "dec_icrs")


def _json_value(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return str(value)


def _sky_columns(columns: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """``ra_hms``/``dec_dms`` (sexagesimal) from RA/Dec degree columns, when the catalogue has them."""
    lower = {name.lower(): name for name in columns}
    ra = next((lower[n] for n in RA_NAMES if n in lower), None)
    dec = next((lower[n] for n in DEC_NAMES if n in lower), None)
    if ra is None or dec is None:
        return {}
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    try:
        ra_v = np.asarray(columns[ra], dtype=float)
        dec_v = np.asarray(columns[dec], dtype=float)
    except (TypeError, ValueError):
        return {}
    good = np.isfinite(ra_v) & np.isfinite(dec_v) & (np.abs(dec_v) <= 90)
    hms, dms = [""] * len(ra_v), [""] * len(ra_v)
    if good.any():
        c = SkyCoord(ra=ra_v[good] * u.deg, dec=dec_v[good] * u.deg, frame="icrs")
        for k, a, d in zip(np.flatnonzero(good), c.ra.to_string(unit=u.hourangle, sep=":", precision=2, pad=True),
                           c.dec.to_string(unit=u.deg, sep=":", precision=1, alwayssign=True, pad=True)):
            hms[k], dms[k] = str(a), str(d)
    return {"ra_hms": hms, "dec_dms": dms}


def page_data(rank_dir: str | Path, top: int | None = None) -> dict:
    """What the page shows: the top ``top`` rows of ``ranked.csv`` with pixels and catalogue columns."""
    from lenshpc.analysis.ranking.report import catalogue_ids, read_rank_dir
    from lenshpc.data.format import open_dataset

    rank_dir = Path(rank_dir)
    info, ranked = read_rank_dir(rank_dir)
    catalogue = Path(info.get("catalogue", ""))
    if not catalogue.is_file():
        raise UserError(f"the catalogue {catalogue} ranked in {rank_dir} (rank.json) is gone; restore it or re-run "
                        "`lenshpc rank` on its new location")
    n = len(ranked["id"])
    if n == 0:
        raise UserError(f"{rank_dir / 'ranked.csv'} lists no cutouts")
    if top is None:
        top = min(DEFAULT_TOP, n)
    if top < 1 or top > n:
        raise UserError(f"--top {top}: the ranking has {n} cutouts; give 1 ≤ --top ≤ {n}")
    rows = ranked["row"][:top]
    with open_dataset(catalogue) as ds:
        if ds.kind != "labelled" or ds.count("images") != n:
            raise DataError(f"{catalogue} no longer matches {rank_dir / 'ranked.csv'} ({n} rows ranked, the file "
                            f"has {ds.count('images') if ds.kind == 'labelled' else 'no images array'}); "
                            "re-run `lenshpc rank`")
        ids = catalogue_ids(ds)
        if [str(v) for v in ids[rows]] != [str(v) for v in ranked["id"][:top]]:
            raise DataError(f"the IDs of {catalogue} differ from those in {rank_dir / 'ranked.csv'}: the catalogue was "
                            "rewritten after ranking; re-run `lenshpc rank`")
        images = ds.read("images", rows)[..., 0].astype(np.float32)
        columns = {k: v for k, v in ds.meta("images", rows).items() if k != "id"}
        bands = list(ds.attrs.get("bands") or ["r"])
    columns.update(_sky_columns(columns))
    names = sorted(columns)
    items = []
    for k in range(top):
        pixels = np.nan_to_num(images[k], nan=0.0, posinf=0.0, neginf=0.0)
        items.append({"id": str(ranked["id"][k]), "rank": float(ranked["rank"][k]), "score": float(ranked["score"][k]),
                      "relative_rank": float(ranked["relative_rank"][k]), "tracer": int(ranked["tracer"][k]),
                      "row": int(rows[k]), "h": int(pixels.shape[0]), "w": int(pixels.shape[1]),
                      "pixels": base64.b64encode(pixels.astype("<f4").tobytes()).decode("ascii"),
                      "columns": {c: _json_value(columns[c][k]) for c in names}})
    key = hashlib.sha256(f"{Path(catalogue).resolve()}|{info.get('model')}|{n}".encode()).hexdigest()[:16]
    return {"title": f"top {top} of {n}: {Path(catalogue).name} ranked by {Path(str(info.get('model', ''))).name}",
            "key": key, "n": n, "top": top, "band": bands[0], "catalogue": str(catalogue),
            "model": str(info.get("model", "")), "columns": names, "labels": list(LABELS),
            "stretches": list(STRETCHES), "items": items}


def write_inspect_page(rank_dir: str | Path, out: str | Path | None = None, top: int | None = None) -> Path:
    """Write the inspection page (atomically; default ``RANK_DIR/inspect.html``) and return its path."""
    data = page_data(rank_dir, top)
    out = Path(out) if out is not None else Path(rank_dir) / "inspect.html"
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / 'inspect.html'}")
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = (_TEMPLATE.replace("__TITLE__", html.escape(data["title"]))
            .replace("__DATA__", payload))
    atomic_write_text(out, page)
    return out


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>lenshpc inspect — __TITLE__</title>
<style>
 body{font:13px/1.3 system-ui,sans-serif;margin:0;background:#1b1d21;color:#ddd}
 header{position:sticky;top:0;background:#25282e;padding:6px 10px;display:flex;gap:14px;align-items:center;
        flex-wrap:wrap;z-index:2;border-bottom:1px solid #444}
 header h1{font-size:14px;margin:0;font-weight:600}
 #grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:6px;padding:8px}
 .cell{background:#2b2e35;border:3px solid #2b2e35;border-radius:4px;padding:3px;cursor:pointer}
 .cell.sel{border-color:#f2c94c}
 .cell canvas{width:100%;image-rendering:pixelated;display:block;background:#000}
 .cap{font-size:11px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
 .tracer{color:#ff7b72;font-weight:600}
 .lab{display:inline-block;padding:0 4px;border-radius:3px;font-weight:600}
 .lab-lens{background:#2ea043;color:#fff}.lab-maybe{background:#d29922;color:#000}.lab-non-lens{background:#6e7681;color:#fff}
 .cell.l-lens{border-color:#2ea043}.cell.l-maybe{border-color:#d29922}.cell.l-non-lens{border-color:#6e7681}
 .cell.sel.l-lens,.cell.sel.l-maybe,.cell.sel.l-non-lens{outline:2px solid #f2c94c}
 #details{padding:4px 10px;font-size:12px;color:#bbb;min-height:2.6em}
 #details b{color:#eee}
 textarea{width:100%;height:4em;background:#111;color:#ccc;font:11px monospace;box-sizing:border-box}
 kbd{background:#444;border-radius:3px;padding:0 3px}
</style></head>
<body>
<header>
 <h1 id="title"></h1>
 <label>stretch <select id="stretch"></select></label>
 <span id="count"></span>
 <button id="export">export labels.csv</button>
 <span class="help"><kbd>←</kbd><kbd>→</kbd>/<kbd>j</kbd><kbd>k</kbd> move · <kbd>1</kbd>/<kbd>l</kbd> lens ·
  <kbd>2</kbd>/<kbd>m</kbd> maybe · <kbd>3</kbd>/<kbd>n</kbd> non-lens · <kbd>0</kbd> clear · <kbd>e</kbd> export</span>
</header>
<div id="details"></div>
<div id="grid"></div>
<details style="padding:0 10px 10px"><summary>labels.csv (also downloaded by “export”)</summary>
<textarea id="labels-csv" readonly></textarea></details>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const STORE = "lenshpc-inspect:" + D.key;
const KEYS = {"1": "lens", "l": "lens", "2": "maybe", "m": "maybe", "3": "non-lens", "n": "non-lens"};
let labels = {};
try { labels = JSON.parse(localStorage.getItem(STORE) || "{}"); } catch (e) { labels = {}; }
let current = 0;
const grid = document.getElementById("grid");
const cells = [];
const pixels = D.items.map(function (it) {
  const raw = atob(it.pixels), buf = new ArrayBuffer(raw.length), bytes = new Uint8Array(buf);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const v = new Float32Array(buf);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < v.length; i++) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i]; }
  return {v: v, lo: lo, hi: hi};
});
const STRETCH = {
  linear: function (x) { return x; },
  sqrt: function (x) { return Math.sqrt(x); },
  asinh: function (x) { return Math.asinh(10 * x) / Math.asinh(10); },
  log: function (x) { return Math.log10(1 + 1000 * x) / 3; }
};
function draw(k, name) {
  const it = D.items[k], p = pixels[k], canvas = cells[k].canvas, f = STRETCH[name];
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(it.w, it.h), span = (p.hi - p.lo) || 1;
  for (let r = 0; r < it.h; r++) for (let c = 0; c < it.w; c++) {
    const x = Math.min(1, Math.max(0, (p.v[r * it.w + c] - p.lo) / span));
    const g = Math.round(255 * f(x)), o = 4 * ((it.h - 1 - r) * it.w + c);  // row 0 at the bottom (FITS)
    img.data[o] = img.data[o + 1] = img.data[o + 2] = g; img.data[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
function fmtScore(s) { return s >= 0.9999 || s < 1e-4 ? s.toExponential(3) : s.toFixed(4); }
function esc(s) { return String(s).replace(/[&<>"]/g, function (ch) { return "&#" + ch.charCodeAt(0) + ";"; }); }
function caption(it) {
  const c = it.columns;
  return "#" + it.rank + " " + esc(it.id) + " <span class=badge></span><br>score " + fmtScore(it.score) +
    (it.tracer ? " · tracer" : "") + (c.ra_hms ? "<br>" + c.ra_hms + " " + c.dec_dms : "");
}
function columnsText(it) {
  return D.columns.map(function (name) { return "<b>" + esc(name) + "</b> " + esc(it.columns[name]); }).join(" · ");
}
function refresh(k) {
  const it = D.items[k], cell = cells[k], lab = labels[it.id];
  cell.div.className = "cell" + (k === current ? " sel" : "") + (lab ? " l-" + lab : "");
  cell.badge.className = lab ? "lab lab-" + lab : "";
  cell.badge.textContent = lab || "";
}
function details() {
  const it = D.items[current];
  document.getElementById("details").innerHTML = "<b>#" + it.rank + "</b> id <b>" + esc(it.id) + "</b> · score " +
    it.score + " · relative rank " + it.relative_rank + " · row " + it.row + (it.tracer ? " · <span class=tracer>tracer</span>" : "") +
    (D.columns.length ? "<br>" + columnsText(it) : "");
  const n = Object.keys(labels).length;
  document.getElementById("count").textContent = n + " of " + D.items.length + " labelled";
}
function select(k) {
  const old = current;
  current = Math.max(0, Math.min(D.items.length - 1, k));
  refresh(old); refresh(current); details();
  cells[current].div.scrollIntoView({block: "nearest"});
}
function csvField(s) { return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function labelsCsv() {
  const lines = ["id,label"];
  D.items.forEach(function (it) { if (labels[it.id]) lines.push(csvField(it.id) + "," + labels[it.id]); });
  return lines.join("\n") + "\n";
}
function save() {
  localStorage.setItem(STORE, JSON.stringify(labels));
  document.getElementById("labels-csv").value = labelsCsv();
}
function exportCsv() {
  const text = labelsCsv();
  document.getElementById("labels-csv").value = text;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  a.download = "labels.csv";
  document.body.appendChild(a); a.click();
  setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
document.getElementById("title").textContent = D.title + " (band " + D.band + ")";
const sel = document.getElementById("stretch");
D.stretches.forEach(function (s) { const o = document.createElement("option"); o.value = o.textContent = s; sel.appendChild(o); });
sel.value = localStorage.getItem("lenshpc-inspect:stretch") || D.stretches[0];
D.items.forEach(function (it, k) {
  const div = document.createElement("div"), canvas = document.createElement("canvas");
  const cap = document.createElement("div"), badge = document.createElement("span");
  canvas.width = it.w; canvas.height = it.h;
  div.id = "cell-" + k; div.title = it.id + "\n" + D.columns.map(function (c) { return c + ": " + it.columns[c]; }).join("\n");
  cap.className = "cap" + (it.tracer ? " tracer" : ""); cap.innerHTML = caption(it);
  cap.querySelector(".badge").replaceWith(badge); div.appendChild(canvas); div.appendChild(cap); grid.appendChild(div);
  div.addEventListener("click", function () { select(k); });
  cells.push({div: div, canvas: canvas, badge: badge});
  draw(k, sel.value); refresh(k);
});
sel.addEventListener("change", function () {
  localStorage.setItem("lenshpc-inspect:stretch", sel.value);
  D.items.forEach(function (_, k) { draw(k, sel.value); });
  sel.blur();
});
document.getElementById("export").addEventListener("click", exportCsv);
document.addEventListener("keydown", function (ev) {
  if (ev.target.tagName === "SELECT" || ev.target.tagName === "TEXTAREA" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  if (k === "ArrowRight" || k === "ArrowDown" || k === "j") select(current + 1);
  else if (k === "ArrowLeft" || k === "ArrowUp" || k === "k") select(current - 1);
  else if (KEYS[k]) { labels[D.items[current].id] = KEYS[k]; save(); refresh(current); select(current + 1); }
  else if (k === "0" || k === "Backspace" || k === "Delete") { delete labels[D.items[current].id]; save(); refresh(current); details(); }
  else if (k === "e") exportCsv();
  else return;
  ev.preventDefault();
});
save(); select(0);
</script>
</body></html>
"""

__all__ = ["DEFAULT_TOP", "LABELS", "STRETCHES", "page_data", "write_inspect_page"]
