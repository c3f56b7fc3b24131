"""The report in a real browser: headless Chromium (Debian's ``chromium`` package) renders it to a
non-blank screenshot, and clicking a header of the per-case table sorts its rows.

Skipped when no Chromium is installed, unless ``OXUNET_REQUIRE_BROWSER=1`` (``.ci/run`` installs
Chromium when missing and sets it, so CI never skips this silently).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_report import make_model_folder

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("OXUNET_REQUIRE_BROWSER") == "1":
        pytest.fail(f"no headless browser found ({', '.join(BROWSERS)}); install Debian's chromium")
    pytest.skip("no Chromium installed (apt-get install -y chromium)")


def _headless(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI containers run as root; a private profile keeps runs independent
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from oxunet.report import write_report

    root = tmp_path_factory.mktemp("browser")
    return write_report(make_model_folder(root), raw_dir=root / "raw")


def test_report_renders_to_a_non_blank_screenshot(report, tmp_path):
    import matplotlib.image as mpimg

    browser = _browser()
    shot = tmp_path / "report.png"
    r = _headless(browser, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    not_white = (pixels < 0.95).any(-1).mean()
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    # text, tables, curves and overlays: a fair part of the page is drawn, in many colours
    assert not_white > 0.05 and colours > 200, (not_white, colours)
    # the header band (dark blue) is at the top: the page's own CSS was applied
    assert pixels[5:40, 5:200].mean(axis=(0, 1))[2] > pixels[5:40, 5:200].mean(axis=(0, 1))[0] + 0.1
    if os.environ.get("OXUNET_REPORT_SCREENSHOT"):  # keep a copy (README picture, closing notes)
        shutil.copyfile(shot, os.environ["OXUNET_REPORT_SCREENSHOT"])


# clicks "mean Dice" twice and writes the case order after each click into <body> attributes
CLICKS = """<script>
(function(){
  function order(){ return Array.prototype.map.call(document.querySelectorAll('#cases tbody tr'),
                                                    function(r){ return r.cells[1].textContent; }).join(','); }
  var th = document.querySelectorAll('#cases th')[2];
  th.click(); document.body.setAttribute('data-first', order() + '|' + th.getAttribute('aria-sort'));
  th.click(); document.body.setAttribute('data-second', order() + '|' + th.getAttribute('aria-sort'));
  document.querySelectorAll('#cases th')[1].click();
  document.body.setAttribute('data-by-name', order());
})();
</script>"""


def test_report_table_sorts_in_the_browser(report, tmp_path):
    browser = _browser()
    page = report.read_text()
    clicked = tmp_path / "clicked.html"
    clicked.write_text(page.replace("</body>", CLICKS + "</body>"))
    r = _headless(browser, tmp_path, "--dump-dom", clicked.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    attrs = dict(re.findall(r'data-(first|second|by-name)="([^"]*)"', r.stdout))
    worst_first = ",".join(f"case_{i:03d}" for i in (4, 3, 2, 1, 0))
    assert attrs["first"] == worst_first + "|ascending"  # mean Dice goes down with the case number
    assert attrs["second"] == ",".join(reversed(worst_first.split(","))) + "|descending"
    assert attrs["by-name"] == ",".join(f"case_{i:03d}" for i in range(5))
