"""The dataset card and the Snakemake report as a user sees them: rendered in headless Chromium.

Chromium comes from Debian's `chromium` package (`.ci/run` installs it); without it these tests skip, and
under CI=true they fail.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from test_workflow import make_workdir

from bioscan_rebuild.stats.figures import FIGURES
from conftest import require, run_snakemake

pytestmark = pytest.mark.slow


def chromium() -> str:
    path = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    require(path, "no chromium on PATH (Debian: apt-get install chromium)")
    return path


def browse(url: str, tmp_path, *, screenshot=None, size=(1280, 4000)) -> str:
    """The DOM after the page's scripts ran (and a screenshot, when asked), as headless Chromium renders it."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += [f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000"]
    command += [f"--window-size={size[0]},{size[1]}"]
    if screenshot is not None:
        subprocess.run([*command, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    result = subprocess.run([*command, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
    return result.stdout


def drawn(image: Image.Image) -> tuple[float, int]:
    """Share of pixels that are not background (near-white), and distinct colours: a blank page has neither."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    ink = (np.abs(pixels - 255).sum(axis=2) > 30).mean()
    return float(ink), len(np.unique(pixels.reshape(-1, 3), axis=0))


@pytest.fixture(scope="module")
def release_run(sample_dir, tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("render"), sample_dir)
    run_snakemake(workdir)
    return workdir


def test_the_dataset_card_renders_with_every_figure(release_run, tmp_path):
    from markdown_it import MarkdownIt

    release = release_run / "results" / "release"
    card = (release / "README.md").read_text()
    header, body = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.S).groups()
    # The Hub's card header: licence, size, and one data_files entry per split of the metadata Parquet.
    assert "license: cc-by-3.0" in header and "- n<1K" in header
    assert len(re.findall(r"path: bioscan5m/metadata/parquet/data/\w+-\*\.parquet", header)) == 8
    html = MarkdownIt("commonmark").enable("table").render(body)
    # Once loaded, the page lists the images the browser could not decode.
    check = (
        "<script>window.addEventListener('load', () => { const bad = [...document.images]"
        ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);"
        "document.body.dataset.broken = bad.join(','); document.body.dataset.images = document.images.length; });"
        "</script>"
    )
    page = release / "card-test.html"  # beside README.md, so the figures' relative links resolve as on the Hub
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'>{check}</head><body>{html}</body></html>")
    try:
        shot = tmp_path / "card.png"
        dom = browse(page.as_uri(), tmp_path, screenshot=shot)
    finally:
        page.unlink()
    assert f'data-images="{len(FIGURES)}"' in dom and 'data-broken=""' in dom, re.findall(r"data-\w+=\"[^\"]*\"", dom)
    for name in FIGURES:
        assert f'alt="{name}"' in dom
    ink, colours = drawn(Image.open(shot))
    assert ink > 0.05 and colours > 200, (ink, colours)


def test_the_report_shows_the_statistics_figures(release_run, tmp_path):
    report = release_run / "results" / "report.html"
    run_snakemake(release_run, "--report", str(report))
    text = report.read_text()
    # Every figure is embedded (a data URI) and is a drawn picture, not a blank canvas.
    embedded = dict(re.findall(r"data:image/png;[^\"]*?filename=(\w+)\.png;base64,([A-Za-z0-9+/=]+)", text))
    for name in FIGURES:
        image = Image.open(io.BytesIO(base64.b64decode(embedded[name])))
        assert image.width >= 400 and drawn(image)[0] > 0.02, name
    shot = tmp_path / "report.png"
    dom = browse(report.as_uri(), tmp_path, screenshot=shot, size=(1280, 1000))
    rendered = re.sub(r"<script.*?</script>", "", dom, flags=re.S)  # the page, not the data its scripts carry
    assert "Statistics" in rendered  # the category menu, rendered by the report's own scripts
    ink, colours = drawn(Image.open(shot))
    assert ink > 0.02 and colours > 50, (ink, colours)
