"""The real MLflow UI, started by ``zoo ui``, driven in headless Chromium.

Three real runs are trained into one store for the module (two on iris to compare, one on digits
registered as ``digits-mlp@champion``); one ``zoo ui`` serves it on a free port; Playwright opens the
experiments' runs pages, the compare view of the two runs and the registered model, checks what a
person would look for there, and saves screenshots to ``test-artifacts/`` at the repository root
(git-ignored).

Needs Debian's ``chromium`` at /usr/bin/chromium (CI installs it); skipped when it is absent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import mlflow
import pytest

from zoo.training.train import train

from .conftest import ROOT, ZOO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 180  # seconds; zoo ui serves after 6-15 s here, far later on a busy machine

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"zoo ui exited with {proc.returncode} before serving:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if r.status == 200:
                    return time.time() - t0
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"zoo ui did not serve {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def rows_seen(page, first_row: str, targets: tuple[str, ...], tries: int = 60) -> set[str]:
    """Scroll the compare view's metrics table (its first row ``first_row``) down; the ``targets`` seen.

    MLflow renders only the rows of the metrics table that are in view (about 17 of them), so a
    metric further down the alphabet exists on the page only once the table is scrolled there.
    """
    grids = page.locator(".ReactVirtualized__Grid")
    anchor = grids.get_by_text(first_row, exact=True).first
    anchor.wait_for()
    anchor.scroll_into_view_if_needed()
    box = page.locator(".ReactVirtualized__Grid", has=page.get_by_text(first_row, exact=True)).first.bounding_box()
    seen: set[str] = set()
    for _ in range(tries):
        seen |= {t for t in targets if grids.get_by_text(t, exact=True).count()}
        if seen == set(targets):
            break
        page.mouse.move(box["x"] + box["width"] + 250, box["y"] + box["height"] / 2)  # over the values
        page.mouse.wheel(0, 150)
        page.wait_for_timeout(200)
    return seen


def is_listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def chromium_page():
    """A page of headless Chromium (Debian's), 1600x1000, waiting up to 90 s for what it looks for; closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(90_000)
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def zoo_ui(tmp_path: Path, store: str):
    """``zoo ui`` over ``store`` on a free port, once it serves: yields its URL and its first line; stopped after."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    log = tmp_path / "zoo_ui.log"
    with log.open("w") as err:  # MLflow's own log, shown if the server does not come up
        proc = subprocess.Popen([*ZOO, "ui", "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        startup = wait_until_serving(base, proc, START_TIMEOUT, log)
        print(f"zoo ui served after {startup:.1f} s")
        yield base, line
    finally:
        # SIGTERM to zoo ui stops the whole server (its workers run in their own process group)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    deadline = time.time() + 30
    while is_listening(port) and time.time() < deadline:
        time.sleep(0.5)
    assert not is_listening(port), f"the MLflow server still listens on {port} after zoo ui ended"


@pytest.fixture(scope="module")
def ui(tmp_path_factory, registry):
    """One store with the module's runs, and one ``zoo ui`` over it: ``(base URL, its first line, store, runs)``."""
    from hydra import compose, initialize_config_dir

    from zoo.config import CONF_DIR

    tmp = tmp_path_factory.mktemp("ui")
    store = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"

    def run(*overrides, shown=None):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"paths.output_dir={tmp / 'out'}", f"tracking.uri={store}",
                                               "trainer.device=cpu", "tracking.system_metrics=false",
                                               "trainer.max_epochs=2", *overrides])
        return train(cfg, registry, shown or ())

    runs = {}
    for name, overrides in {"ui-mlp": ["model=mlp", "model.hidden_sizes=[16]", "optimizer.lr=0.01"],
                            "ui-perceptron": ["model=perceptron", "optimizer.lr=0.1"]}.items():
        runs[name] = run("data=iris", "tracking.log_model=false", "tracking.experiment=ui", f"tracking.run_name={name}",
                         *overrides, shown=overrides)
    runs["ui-digits"] = run("tracking.experiment=ui-models", "tracking.run_name=ui-digits",
                            "tracking.register=digits-mlp", "tracking.register_alias=champion")
    ARTIFACTS.mkdir(exist_ok=True)
    with zoo_ui(tmp, store) as (base, line):
        yield base, line, store, runs


def test_ui_shows_the_runs_and_compares_two(tmp_path, ui):
    base, line, store, trained = ui
    runs = {name: trained[name]["run_id"] for name in ("ui-mlp", "ui-perceptron")}
    experiment_id = trained["ui-mlp"]["experiment_id"]
    ids = list(runs.values())

    assert f"MLflow UI for {store} at {base}" in line
    with chromium_page() as page:
        # the experiment: both runs listed; their metrics offered as columns, and shown once chosen
        page.goto(f"{base}/#/experiments/{experiment_id}/runs")
        for name in runs:
            page.get_by_text(name, exact=True).first.wait_for()
        assistant = page.get_by_role("button", name="Close", exact=True)  # MLflow's chat panel: room for runs
        if assistant.count():
            assistant.first.click()
        page.get_by_role("button", name="Columns").click()
        for metric in ("best/val_accuracy", "train/loss", "test/accuracy", "test/loss"):
            page.get_by_text(metric, exact=True).first.wait_for()
        page.get_by_placeholder("Search columns").fill("test/")
        for metric in ("test/accuracy", "test/loss"):
            page.get_by_text(metric, exact=True).first.click()
        page.keyboard.press("Escape")
        client = mlflow.MlflowClient(store)
        for run_id in ids:  # the grid holds each value as MLflow stored it (the cell may elide it)
            for metric in ("test/accuracy", "test/loss"):
                page.get_by_text(repr(client.get_run(run_id).data.metrics[metric])).first.wait_for()
        page.screenshot(path=str(tmp_path / "ui_runs.png"))

        # the compare view of the two runs: ids, names, the differing params, the metrics
        query = f"runs={quote(json.dumps(ids))}&experiments={quote(json.dumps([experiment_id]))}"
        page.goto(f"{base}/#/compare-runs?{query}")
        page.get_by_text("Comparing 2 Runs").first.wait_for()
        page.locator(".js-plotly-plot").first.wait_for()  # the parallel-coordinates plot
        body = page.inner_text("body")
        for text in (*ids, *runs, "model.name", "optimizer.lr", "perceptron"):
            assert text in body, f"{text!r} is not on the compare page"
        metrics = ("test/accuracy", "test/loss", "train/loss")
        assert rows_seen(page, "best/val_accuracy", metrics) == set(metrics)
        page.evaluate("window.scrollTo(0, 0)")
        page.locator("main").first.evaluate("e => e.scrollTo(0, 0)")
        page.screenshot(path=str(tmp_path / "ui_compare.png"), full_page=True)
    for png in ("ui_runs.png", "ui_compare.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shutil.copy(tmp_path / png, ARTIFACTS / png)


def test_ui_shows_datasets_the_training_view_and_a_registered_model(tmp_path, ui):
    """A run on digits, registered as digits-mlp@champion: what a person looks for in the MLflow UI."""
    base, _, store, trained = ui
    m = trained["ui-digits"]
    client = mlflow.MlflowClient(store)
    inputs = client.get_run(m["run_id"]).inputs.dataset_inputs
    digests = {d.tags[0].value: d.dataset.digest for d in inputs if d.dataset.name == "digits"}
    assert set(digests) == {"training", "validation", "test"}
    shots = ("ui_training_view.png", "ui_registered_model.png")
    with chromium_page() as page:
        # the experiment, as zoo ui says to open it: its runs (model training), not its traces
        page.goto(f"{base}/#/experiments/{m['experiment_id']}?workflowType=machine_learning")
        page.get_by_text("ui-digits", exact=True).first.wait_for()
        assert f"/experiments/{m['experiment_id']}/runs" in page.url, page.url
        assistant = page.get_by_role("button", name="Close", exact=True)
        if assistant.count():
            assistant.first.click()
        # the Dataset column: each split by name and digest, with its context
        page.get_by_text("Dataset", exact=True).first.wait_for()
        page.get_by_text(f"digits ({digests['training'][:8]})", exact=True).first.wait_for()
        body = page.inner_text("body")
        assert "Training" in body and "Validation" in body, body[:3000]
        page.screenshot(path=str(tmp_path / shots[0]))
        # the registered model's page: its version, alias and the description Zoo wrote
        page.goto(f"{base}/#/models/digits-mlp")
        page.get_by_text("mlp on digits (classification)").first.wait_for()
        body = page.inner_text("body")
        assert "Version 1" in body and "champion" in body, body[:3000]
        page.screenshot(path=str(tmp_path / shots[1]), full_page=True)
    for png in shots:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shutil.copy(tmp_path / png, ARTIFACTS / png)
