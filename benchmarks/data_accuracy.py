"""Accuracy on scikit-learn's digits written as PNG files, read back by ``data=images``.

Writes the 1,797 8x8 digits as greyscale PNGs in one folder per class, then trains ``mlp`` and the
small CNN plugin of ``docs/examples/small_cnn.py`` on that folder with Zoo's defaults (20 epochs,
batch 64, Adam 1e-3, seed 0, on the CPU) and prints each model's test accuracy::

    .venv/bin/python benchmarks/data_accuracy.py [--epochs 20] [--models mlp,small_cnn] [--keep DIR]

``tests/test_data_files.py`` runs it and checks both reach 0.95.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


def write_digit_pngs(folder: Path) -> Path:
    """The digits as ``folder/<digit>/<index>.png`` (pixels 0..16 scaled to 0..255)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).round().astype(np.uint8), mode="L").save(folder / str(label) / f"{i:04d}.png")
    return folder


def accuracy(folder: Path, model: str, work: Path, epochs: int = 20) -> float:
    """``test/accuracy`` of ``zoo train model=<model> data=images data.path=<folder>`` (a store in ``work``)."""
    import zoo
    from zoo.config import compose, register_configs
    from zoo.plugin.registry import load_registry

    registry = load_registry([EXAMPLES])
    register_configs(registry)
    cfg = compose([f"plugins.dir={EXAMPLES}", f"model={model}", "data=images", f"data.path={folder}",
                   f"trainer.max_epochs={epochs}", "trainer.device=cpu", "tracking.system_metrics=false",
                   "tracking.log_model=false", f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
                   f"paths.output_dir={work / model}"])
    return zoo.train(cfg, registry)["test/accuracy"]


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--models", default="mlp,small_cnn")
    parser.add_argument("--keep", type=Path, help="write the PNGs and the store here (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        folder = write_digit_pngs(work / "digits_png")
        results = {m: accuracy(folder, m, work, args.epochs) for m in args.models.split(",")}
    for model, acc in results.items():
        print(f"{model:10s} test/accuracy {acc:.4f}  (digits as PNG, {args.epochs} epochs, seed 0)")
    return results


if __name__ == "__main__":
    main()
