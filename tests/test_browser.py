"""A real browser runs notebook 08 in JupyterLab and moves the attention explorer's layer slider.

nbval executes notebooks but never renders a widget or moves a control; this test does both. JupyterLab runs
on 127.0.0.1 (a free port, a token) with its config, runtime, data and IPython dirs in a temporary folder
and a temporary copy of notebooks/ as its root; headless Chromium, driven by Playwright, opens
08_attention_maps.ipynb, runs every cell from the Run menu, waits for the explorer's image, screenshots it,
moves the "layer" slider one step with the keyboard, waits for the image to be redrawn, and checks that the
map changed and that no cell raised and no widget failed to render.

The course website (`make book`, docs/book/make_book.py) is tested the same way: a two-lesson site is built (01,
whose figure cells are folded, and 08, the attention maps) and served on 127.0.0.1; every lesson page must load
with no console error and no request leaving the site, show every figure its executed notebook holds, decoded,
link Colab to the notebook's path in the repository, fit a phone's width, and notebook 08's page is
screenshotted to check that the attention maps are on screen.

Needs Chromium (`apt-get install chromium`, /usr/bin/chromium) and the `playwright` package
(`pip install playwright`; no `playwright install`: the system Chromium is used).
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "08_attention_maps.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 90  # JupyterLab on two busy cores
PAGE_LOAD_S = 90  # the Lab bundle, then the notebook and its kernel
RUN_ALL_S = 240  # every cell of the notebook under its smoke preset
REDRAW_S = 60  # one explorer redraw after a slider move
MIN_CHANGED_PIXELS = 0.01  # share of the map image's pixels that must differ between two layers
# Texts of the outputs that show a failure: a traceback (Lab renders errors as stderr; IPython's start with
# "Traceback (most recent call last)", a syntax error's ends in "SyntaxError: ..."), or the message Lab puts in
# place of a widget it cannot render. Warnings on stderr start with a file name and pass.
FAILED_OUTPUTS_JS = """() => [...document.querySelectorAll('.jp-OutputArea-output')].filter(e =>
    (e.dataset.mimeType === 'application/vnd.jupyter.stderr'
     && /Traceback \\(most recent call last\\)|^\\w*(Error|Exception)\\b/m.test(e.textContent))
    || e.textContent.includes('Error displaying widget')).map(e => e.textContent)"""


def _browser_or_skip():
    """The Playwright entry point, or a skip that says how to enable the test."""
    how = "to enable it: `apt-get install chromium` (for /usr/bin/chromium) and `pip install playwright`"
    if not CHROMIUM.is_file():
        pytest.skip(f"browser test needs Chromium at {CHROMIUM}; {how}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"browser test needs the playwright Python package; {how}")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server in its own process group, isolated in `base`; `stop()` ends the group."""

    def __init__(self, base: Path, root: Path) -> None:
        self.port, self.token = _free_port(), secrets.token_hex(16)
        env = dict(os.environ)
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR"):
            env[name] = str(base / name.lower())
            Path(env[name]).mkdir(parents=True)
        env.update(MPLBACKEND="module://matplotlib_inline.backend_inline", TQDM_DISABLE="1")
        # the news toast would cover the notebook and wait for a click
        labconfig = base / "jupyter_config_dir" / "labconfig"
        labconfig.mkdir()
        announcements = {"@jupyterlab/apputils-extension:announcements": True}
        (labconfig / "page_config.json").write_text(json.dumps({"disabledExtensions": announcements}))
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ] + (["--allow-root"] if os.geteuid() == 0 else [])  # CI containers run as root
        self.log_path = base / "lab.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=root, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"JupyterLab did not answer within {timeout:.0f} s")

    def start_kernel(self, notebook: str) -> None:
        """Open a session with a python3 kernel for `notebook` before the page does.

        Left to the page, Lab asks for a kernel in a dialog, or (with auto-start) may start one, replace it, and
        lose a Run All sent in between; an existing session is simply joined.
        """
        body = {"path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": "python3"}}
        request = urllib.request.Request(
            f"{self.url}/api/sessions",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=SERVER_START_S) as r:
            assert r.status == 201, f"POST /api/sessions answered {r.status}"

    def stop(self) -> None:
        """SIGTERM to the server's process group (its kernels included), SIGKILL if it lingers."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        finally:
            self._log.close()


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def changed_share(a: bytes, b: bytes) -> float:
    """Share of pixels that differ by more than a few grey levels between two screenshots (1.0 if sizes differ)."""
    x, y = _png(a), _png(b)
    if x.shape != y.shape:
        return 1.0
    return float((np.abs(x - y).max(axis=-1) > 8).mean())


def run_explorer_notebook(sync_playwright, notebooks: Path, notebook: str, base: Path) -> dict:
    """Run `notebook` (from a copy of the folder `notebooks`) in JupyterLab in Chromium; move the explorer's layer.

    Returns the evidence: screenshots before/after, the layer values, error texts found in the outputs,
    and the cells that never ran.
    """
    root = base / "notebooks"  # named so: the notebooks then work from `base` as the repository root
    shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    lab = Lab(base, root)
    shots: dict = {}
    try:
        lab.wait_ready(SERVER_START_S)
        lab.start_kernel(notebook)
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(base / "chromium-profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 1000},
            )
            try:
                page = context.new_page()
                page.set_default_timeout(PAGE_LOAD_S * 1000)
                try:
                    _drive(page, f"{lab.url}/lab/tree/{notebook}?token={lab.token}", shots)
                except Exception:
                    page.screenshot(path=str(base / "failure.png"), full_page=True)
                    raise
            finally:
                context.close()
    except Exception as e:
        raise AssertionError(f"{e}\n(screenshot: {base / 'failure.png'}; server log tail:)\n{lab.log_tail()}") from e
    finally:
        lab.stop()
    return shots


def _drive(page, url: str, shots: dict) -> None:
    page.goto(url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=PAGE_LOAD_S * 1000)
    page.locator(".jp-Notebook .jp-Cell").first.click()  # the notebook becomes the current widget
    run_all = page.locator(".lm-Menu-item[data-command='runmenu:run-all']")
    deadline = time.monotonic() + PAGE_LOAD_S
    while True:  # the Run menu's items stay disabled until Lab has made the notebook current
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        run_all.wait_for()
        if "lm-mod-disabled" not in (run_all.get_attribute("class") or ""):
            break
        page.keyboard.press("Escape")
        if time.monotonic() > deadline:
            raise AssertionError(f"Run > Run All Cells stayed disabled for {PAGE_LOAD_S} s")
        time.sleep(1)
    run_all.click()
    # Run All is over when the kernel is idle, nothing is queued ("[*]"), and every code cell has run or one
    # failed (Lab stops at the first error)
    page.wait_for_function(
        f"""() => {{
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent);
            const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
            return prompts.length > 0 && !prompts.some(t => t.includes('*'))
                && status !== null && status.getAttribute('data-status') === 'idle'
                && (prompts.every(t => /\\[\\d+\\]/.test(t)) || ({FAILED_OUTPUTS_JS})().length > 0);
        }}""",
        timeout=RUN_ALL_S * 1000,
    )
    shots["errors"] = page.evaluate(FAILED_OUTPUTS_JS)
    shots["unrun"] = page.locator(".jp-CodeCell .jp-InputArea-prompt").evaluate_all(
        "els => els.map(e => e.textContent).filter(t => !/\\[\\d+\\]/.test(t))"
    )
    if shots["errors"] or shots["unrun"]:
        return  # the test reports them; there may be no explorer to look at
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text="layer")).last
    image = page.locator(".jp-OutputArea-output img.widget-image").last
    image.wait_for(state="visible")
    image.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    shots["layer_before"] = readout.inner_text().strip()
    shots["before"] = image.screenshot()
    src = image.get_attribute("src")
    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        "([img, old]) => img.getAttribute('src') !== old && img.complete",
        arg=[image.element_handle(), src],
        timeout=REDRAW_S * 1000,
    )
    shots["layer_after"] = readout.inner_text().strip()
    shots["after"] = image.screenshot()


@pytest.mark.slow
def test_notebook_08_explorer_renders_in_jupyterlab_and_the_layer_slider_redraws_the_map(tmp_path):
    sync_playwright = _browser_or_skip()
    shots = run_explorer_notebook(sync_playwright, ROOT / "notebooks", NOTEBOOK, tmp_path)
    assert shots["errors"] == [], f"cells raised or widgets failed to render: {shots['errors']}"
    assert shots["unrun"] == [], f"cells that did not run: {shots['unrun']}"
    assert int(shots["layer_after"]) == int(shots["layer_before"]) - 1
    share = changed_share(shots["before"], shots["after"])
    assert share > MIN_CHANGED_PIXELS, f"only {share:.2%} of the map changed between layers"


# The course website ---------------------------------------------------------------------------------------------
SITE_LESSONS = ["01_video_data", "08_attention_maps"]  # 01: folded figure cells; 08: the attention maps
BOOK_BUILD_S = 600  # two notebooks executed, then Sphinx, on two busy cores
PHONE = {"width": 390, "height": 844}
sys.path.insert(0, str(ROOT / "docs" / "book"))
from colab_cells import colab_url  # noqa: E402
from figure_cells import FOLDED  # noqa: E402


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports failures; the request log is noise
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The two-lesson site built by docs/book/make_book.py, served on 127.0.0.1: (base URL, site folder, sources)."""
    sync_playwright = _browser_or_skip()
    base = tmp_path_factory.mktemp("book")
    only = ",".join(s.split("_")[0] for s in SITE_LESSONS)
    cmd = [sys.executable, str(ROOT / "docs" / "book" / "make_book.py"), "--only", only]
    cmd += ["--out", str(base / "book"), "--scratch", str(base / "scratch")]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=BOOK_BUILD_S)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    handler = functools.partial(QuietHandler, directory=str(base / "book"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            yield {
                "url": f"http://127.0.0.1:{server.server_address[1]}",
                "book": base / "book",
                "executed": base / "scratch" / "src" / "notebooks",
                "browser": browser,
                "shots": base,
            }
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def open_page(site: dict, path: str, viewport: dict | None = None):
    """Load `path` of the site in a fresh context; (page, console errors, requests that tried to leave the site)."""
    context = site["browser"].new_context(viewport=viewport or {"width": 1280, "height": 900})
    page = context.new_page()
    errors, foreign = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}") if r.url.startswith(site["url"]) else None
    )

    def local_only(route) -> None:
        if route.request.url.startswith(site["url"]):
            route.continue_()
        else:  # the site must work offline and send readers to no third party
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(f"{site['url']}/{path}", wait_until="networkidle")
    return page, errors, foreign


def figures_in(executed: Path) -> int:
    """Images (PNG, GIF, ...) the executed notebook holds in its outputs (after make_book.py made it static)."""
    nb = nbformat.read(executed, as_version=4)
    outputs = [o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return sum(any(mime.startswith("image/") for mime in data) for data in outputs)


IMAGES_JS = """sel => [...document.querySelectorAll(sel)].map(i =>
    ({src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"""


@pytest.mark.slow
@pytest.mark.parametrize("stem", SITE_LESSONS)
def test_a_lesson_page_loads_cleanly_with_its_figures_decoded_and_its_colab_link(site, stem: str):
    page, errors, foreign = open_page(site, f"notebooks/{stem}.html")
    figures = page.evaluate(IMAGES_JS, ".cell_output img")
    badge = page.evaluate(IMAGES_JS, "a img[alt='Open In Colab']")
    colab_links = set(re.findall(r"https://colab\.research\.google\.com/[^\"' ]+", page.content()))
    folded = page.locator("details.hide.above-input")
    folded_open = [folded.nth(i).get_attribute("open") for i in range(folded.count())]
    page.context.close()
    assert errors == [] and foreign == [], (errors, foreign)
    assert len(figures) == figures_in(site["executed"] / f"{stem}.ipynb") > 0, figures
    undecoded = [f["src"] for f in figures if not (f["complete"] and f["w"] > 0 and f["h"] > 0)]
    assert undecoded == [], undecoded
    assert len(badge) == 1 and badge[0]["w"] > 0, badge
    assert colab_links == {colab_url(ROOT / "notebooks" / f"{stem}.ipynb")}  # the badge and the theme's launch button
    assert len(folded_open) == len(FOLDED.get(stem, [])) and not any(folded_open)  # code folded, figure shown


@pytest.mark.slow
@pytest.mark.parametrize("path", ["index.html", "results.html", *[f"notebooks/{s}.html" for s in SITE_LESSONS]])
def test_a_page_fits_a_phone_screen_without_sideways_scrolling(site, path: str):
    page, errors, _ = open_page(site, path, PHONE)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    page.context.close()
    assert errors == [] and widths[0] <= widths[1], (errors, widths)


@pytest.mark.slow
def test_the_front_page_lists_the_lessons_in_course_order_and_the_results_page_has_table_1(site):
    page, errors, foreign = open_page(site, "index.html")
    lessons = page.locator("table a.reference.internal").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    page.context.close()
    page, more_errors, more_foreign = open_page(site, "results.html")
    rows = page.locator("#table-1-on-a-laptop table").first.locator("tbody tr").count()
    page.context.close()
    assert errors == more_errors == [] and foreign == more_foreign == []
    assert lessons == [f"notebooks/{s}.html" for s in SITE_LESSONS]
    assert rows == len(json.loads((ROOT / "benchmarks" / "table1.json").read_text())["rows"]) == 7


@pytest.mark.slow
def test_notebook_08s_page_shows_the_attention_maps_on_screen(site):
    """A screenshot of the class-token overlay as the page shows it matches the figure the notebook drew."""
    page, errors, _ = open_page(site, "notebooks/08_attention_maps.html")
    figure = page.locator("#spatial-attention-of-the-class-token .cell_output img").first
    figure.scroll_into_view_if_needed()
    box = figure.bounding_box()
    shot = site["shots"] / "08_class_token_overlay.png"
    figure.screenshot(path=str(shot))
    page.screenshot(path=str(site["shots"] / "08_page.png"), full_page=True)
    source = site["book"] / "notebooks" / figure.get_attribute("src")
    page.context.close()
    assert errors == []
    assert box["width"] >= 600 and box["height"] >= 60, box  # the frames row spans the text column
    seen = Image.open(shot).convert("RGB")
    pixels = np.asarray(seen, dtype=np.float32)
    assert pixels.std() > 20 and (pixels.min(-1) < 235).mean() > 0.5, "the figure is blank or mostly white"
    drawn = np.asarray(Image.open(source).convert("RGB").resize(seen.size, Image.BILINEAR), dtype=np.float32)
    assert np.abs(pixels - drawn).mean() < 12, f"screenshot differs from the notebook's figure ({shot})"
