"""The real thing: JupyterLab in headless Chromium runs lesson 04, a slider moves, the figure changes.

Skips (saying how to enable it) when Debian's chromium is missing, unless REQUIRE_BROWSER=1 (CI), where it fails.
The notebook is copied to a temporary root so that JupyterLab's autosave can never touch the repository.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "04_vanishing_gradients.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on loopback with a token, serving a copy of the notebook; yields (url, token)."""
    if not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed (apt-get install chromium) so the browser test cannot run"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; REQUIRE_BROWSER=1 makes that a failure")
        pytest.skip(message + "; CI installs it and sets REQUIRE_BROWSER=1")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    port, token = free_port(), "browser-test-" + os.urandom(8).hex()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
        yield url, token, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_decay_panel_moves_in_jupyterlab(jupyterlab):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    url, token, tmp_path = jupyterlab
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "chromium"), executable_path=CHROMIUM,
                                                       headless=True, args=CHROMIUM_ARGS,
                                                       viewport={"width": 1280, "height": 1000})
        page = browser.new_page()
        page.goto(f"{url}/lab/tree/{NOTEBOOK}?reset&token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        page.wait_for_function("() => document.querySelector('#jp-main-statusbar')?.textContent.includes('| Idle')",
                               timeout=90_000)  # the kernel has started
        toast = page.locator(".jp-toast-button:has-text('No')")  # decline the news toast, if any
        if toast.count():
            try:
                toast.first.click(timeout=3_000)
            except PlaywrightError:
                pass  # it closed by itself

        # Run all cells from the menu, as a reader would.
        page.click(".jp-Notebook .jp-Cell >> nth=0")
        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click(".lm-Menu-item:has(.lm-Menu-itemLabel:text-is('Run All Cells'))")
        page.wait_for_selector(".widget-slider", timeout=60_000)
        page.wait_for_function(
            "() => { const p = [...document.querySelectorAll('.jp-InputArea-prompt')].map(e => e.textContent);"
            " return p.length > 0 && p.every(t => !t.includes('*'))"
            " && document.querySelectorAll('.jp-Cell .widget-image').length >= 2; }", timeout=120_000)

        errors = page.query_selector_all(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert not errors, "error output in the browser: " + errors[0].inner_text()[:500]

        panel = page.query_selector_all(".jp-Cell .widget-vbox")[0]
        image = panel.query_selector(".widget-image")
        readout = panel.query_selector(".widget-readout")
        before_src, before_value = image.get_attribute("src"), readout.inner_text()
        panel.scroll_into_view_if_needed()
        handle = panel.query_selector(".noUi-handle")
        handle.focus()
        for _ in range(5):
            handle.press("ArrowRight")
        page.wait_for_function("([img, src]) => img.getAttribute('src') !== src", arg=[image, before_src],
                               timeout=30_000)
        assert readout.inner_text() != before_value
        page.wait_for_timeout(500)  # let the last redraw land before the picture

        ARTIFACTS.mkdir(exist_ok=True)
        panel.screenshot(path=str(ARTIFACTS / "jupyterlab_decay_panel.png"))
        browser.close()
