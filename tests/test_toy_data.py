"""The built-in toy datasets (digits, iris, wine, breast_cancer, diabetes) are scikit-learn's bundled files,
read with numpy without importing scikit-learn: the same arrays as its loaders, and a default ``zoo train``
that never imports it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import datasets
from sklearn.utils import Bunch
from zoo_builtins import tabular

from .conftest import runs_in

FIELDS = ("data", "target", "feature_names", "target_names")


def _same(ours, theirs) -> bool:
    if isinstance(theirs, np.ndarray):
        return (isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype and ours.shape == theirs.shape
                and ours.tobytes() == theirs.tobytes())
    return type(ours) is type(theirs) and ours == theirs


@pytest.mark.parametrize("name", sorted(tabular.TOY_FILES))
def test_toy_data_is_what_sklearns_loader_gives(name):
    ours, theirs = tabular.toy_data(name), getattr(datasets, f"load_{name}")()
    assert not isinstance(ours, Bunch)  # read from the files, not scikit-learn's loader
    for field in FIELDS:
        if field in theirs:
            assert _same(getattr(ours, field), theirs[field]), (name, field)


def test_without_the_files_it_is_sklearns_loader(monkeypatch):
    monkeypatch.setitem(tabular.TOY_FILES, "iris", ("no_such_file.csv",))  # as if scikit-learn moved its files
    ours = tabular.toy_data("iris")
    assert isinstance(ours, Bunch)
    assert all(_same(getattr(ours, f), datasets.load_iris()[f]) for f in FIELDS)


def test_a_default_train_does_not_import_sklearn(tmp_path):
    """The default run's data (digits) comes without scikit-learn's import (about a second)."""
    code = ("import sys\nfrom zoo.cli import main\ntry:\n    main(['train', 'trainer.max_epochs=1'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('SKLEARN', sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert "SKLEARN []" in r.stdout, (r.stdout[-1000:], r.stderr[-1000:])
    (run,) = runs_in(uri)
    assert run.info.status == "FINISHED" and run.data.params["data.name"] == "digits", run.data.params
