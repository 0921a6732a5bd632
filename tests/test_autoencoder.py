"""The autoencoder family: shapes and codes, input noise, the anomaly splits, the presets, and a
short anomaly-detection run whose AUROC and report figures are read back from MLflow."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo_builtins import autoencoder as ae
from zoo_builtins import image as image_data
from zoo_builtins import tabular
from zoo.config import CONF_DIR, validate
from zoo.training.train import train


def _digits_anomaly(image: bool):
    """The loader of digits_image_anomaly or digits_anomaly (the datasets live in image.py and tabular.py)."""
    return image_data.load_digits_image_anomaly if image else tabular.load_digits_anomaly

PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("autoencoder_*.yaml"))


@pytest.fixture(scope="module")
def digits():
    return tabular.load_digits_recon(seed=0)


@pytest.fixture(scope="module")
def images():
    return image_data.load_digits_image(seed=0)


def test_dense_autoencoder_reconstructs_the_input_shape_through_its_bottleneck(digits, images):
    for splits in (digits, images):
        model = ae.build_autoencoder(splits.info, [32, 16], 3, "relu", "sigmoid").eval()
        x = splits.train.example(5)
        with torch.no_grad():
            out, z = model(x), model.encode(x)
        assert out.shape == x.shape
        assert z.shape == (5, 3)
        assert torch.allclose(model.decode(z), out)
        assert 0 <= float(out.min()) and float(out.max()) <= 1  # sigmoid output for pixels in [0, 1]


def test_conv_autoencoder_keeps_any_image_size(images):
    model = ae.build_conv_autoencoder(images.info, [8, 16], 5, "relu", "identity", 0.0, "gaussian").eval()
    x = images.train.example(4)
    assert x.shape == (4, 1, 8, 8)
    assert model(x).shape == x.shape and model.encode(x).shape == (4, 5)
    for shape in [(3, 7, 9), (1, 28, 28), (2, 5, 5)]:  # odd sizes need output padding on the way up
        info = zoo.DataInfo("image", "reconstruction", shape, 0)
        model = ae.build_conv_autoencoder(info, [4, 4, 4], 2, "tanh", "identity", 0.0, "gaussian")
        assert model(torch.randn(2, *shape)).shape == (2, *shape)


@pytest.mark.parametrize("noise_type", ["gaussian", "mask"])
def test_denoising_corrupts_only_while_training(digits, noise_type):
    torch.manual_seed(0)
    model = ae.build_denoising_autoencoder(digits.info, [16], 4, "relu", "identity", 0.5, noise_type)
    x = digits.train.example(8)
    model.train()
    assert not torch.allclose(model(x), model(x))  # a fresh corruption each call
    model.eval()
    clean = model.decode(model.encode(x))
    assert torch.equal(model(x), clean)


def test_builders_name_the_bad_setting(digits, images):
    with pytest.raises(ValueError, match=r"model.latent_dim=0 is out of range"):
        ae.build_autoencoder(digits.info, [8], 0, "relu", "identity")
    with pytest.raises(ValueError, match=r"model.hidden_sizes=\[8, 0\]"):
        ae.build_autoencoder(digits.info, [8, 0], 2, "relu", "identity")
    with pytest.raises(ValueError, match=r"model.output_activation='softmax'"):
        ae.build_autoencoder(digits.info, [8], 2, "relu", "softmax")
    with pytest.raises(ValueError, match=r"model.noise=0 is out of range"):
        ae.build_denoising_autoencoder(digits.info, [8], 2, "relu", "identity", 0, "gaussian")
    with pytest.raises(ValueError, match=r"model.noise=1.5 is out of range"):
        ae.build_denoising_autoencoder(digits.info, [8], 2, "relu", "identity", 1.5, "mask")
    with pytest.raises(ValueError, match=r"model.noise_type='salt'"):
        ae.build_denoising_autoencoder(digits.info, [8], 2, "relu", "identity", 0.1, "salt")
    with pytest.raises(ValueError, match=r"needs images shaped \(C, H, W\)"):
        ae.build_conv_autoencoder(digits.info, [8], 2, "relu", "identity", 0.0, "gaussian")
    with pytest.raises(ValueError, match=r"model.channels=\[\] is empty"):
        ae.build_conv_autoencoder(images.info, [], 2, "relu", "identity", 0.0, "gaussian")


def test_reconstruction_data_is_scaled_and_keeps_labels(digits, images):
    assert digits.info.task == images.info.task == "reconstruction"
    assert digits.info.input_shape == (64,) and images.info.input_shape == (1, 8, 8)
    assert digits.info.meta["image_shape"] == (8, 8)
    x, y = next(iter(digits.train.batches(None)))
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(y.tolist()) == set(range(10))  # digit labels, for the latent plot


@pytest.mark.parametrize("image", [False, True])
def test_digits_anomaly_trains_on_normal_digits_only(image):
    from sklearn.datasets import load_digits

    counts = torch.bincount(torch.as_tensor(load_digits().target))
    splits = _digits_anomaly(image)(seed=1, anomaly_class=3)
    ys = [next(iter(s.batches(None)))[1] for s in (splits.train, splits.val, splits.test)]
    assert splits.info.task == "anomaly" and splits.info.meta["anomaly_class"] == 3
    assert int(ys[0].sum()) == 0  # no anomaly in train
    for y in ys[1:]:
        assert set(y.tolist()) == {0, 1}
    assert sum(int(y.sum()) for y in ys) == int(counts[3])  # every 3, and nothing else, is an anomaly
    assert sum(len(y) for y in ys) == int(counts.sum())
    with pytest.raises(ValueError, match=r"data.anomaly_class=10 is out of range"):
        _digits_anomaly(image)(seed=0, anomaly_class=10)


def test_breast_cancer_anomaly_is_malignant_and_standardised_on_benign():
    splits = tabular.load_breast_cancer_anomaly(seed=0)
    (xt, yt), (_, yv), (_, ye) = (next(iter(s.batches(None))) for s in (splits.train, splits.val, splits.test))
    assert int(yt.sum()) == 0 and int(yv.sum()) > 0 and int(ye.sum()) > 0
    assert int(yv.sum() + ye.sum()) == 212  # the malignant tumours
    assert torch.allclose(xt.mean(0), torch.zeros(30), atol=1e-4)


def test_report_draws_reconstructions_codes_and_scores(tmp_path, images):
    splits = _digits_anomaly(True)(seed=0, anomaly_class=7)
    model = ae.build_conv_autoencoder(splits.info, [4], 3, "relu", "sigmoid", 0.1, "mask").eval()
    paths = ae.report(model, splits, tmp_path)
    assert sorted(p.name for p in paths) == ["anomaly_scores.png", "latent.png", "reconstructions.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
    # a bottleneck of 1, tabular data with no image shape: only the latent plot
    splits = tabular.load_breast_cancer_anomaly(seed=0)
    model = ae.build_autoencoder(splits.info, [8], 1, "relu", "identity").eval()
    assert [p.name for p in ae.report(model, splits, tmp_path / "bc")] == ["latent.png", "anomaly_scores.png"]


def test_the_lesson_preset_exists():
    assert "autoencoder_anomaly" in PRESETS and len(PRESETS) >= 5


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_compose_and_validate(make_cfg, registry, preset):
    cfg = make_cfg(f"experiment={preset}")
    plain = validate(cfg, registry)
    assert plain["tracking"]["experiment"] == "autoencoder"
    assert registry.architecture(plain["model"]["name"]).decl.family == "autoencoder"
    assert registry.dataset(plain["data"]["name"]).decl.task in ("reconstruction", "anomaly")


def test_anomaly_run_records_auroc_and_report(make_cfg, client):
    cfg = make_cfg("experiment=autoencoder_anomaly", "trainer.max_epochs=5", "tracking.log_model=false",
                   "tracking.hist_every=0")
    metrics = train(cfg)
    run = client.get_run(metrics["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["zoo.task"] == "anomaly"
    assert run.data.metrics["test/auroc"] == pytest.approx(metrics["test/auroc"])
    assert run.data.metrics["test/auroc"] > 0.8  # well above chance after five epochs
    plots = {a.path for a in client.list_artifacts(metrics["run_id"], "plots")}
    assert {"plots/reconstructions.png", "plots/latent.png", "plots/anomaly_scores.png"} <= plots
