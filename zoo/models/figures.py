"""The figures ``zoo eval`` draws: what a person looks at to judge a model on a split.

Classifiers: the confusion matrix, and ROC and precision-recall curves (one per class, one-vs-rest;
a binary score such as the anomaly score gets one curve). Regression: predictions against targets,
and the residuals' histogram. Autoencoders: inputs above their reconstructions (image data), and
the score's histogram per class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.plots import pyplot

MAX_CLASSES_DRAWN = 12  # curves for at most this many classes (the largest ones)


def confusion(labels: np.ndarray, predicted: np.ndarray, names: list[str], path: Path) -> Path:
    k = len(names)
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (labels, predicted), 1)
    plt = pyplot()
    size = min(3 + 0.45 * k, 14)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(counts, cmap="Blues")
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=90 if k > 8 else 0, fontsize=7)
        ax.set_yticks(range(k), names, fontsize=7)
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=6,
                            color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({len(labels)} examples)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_pr(scores: np.ndarray, labels: np.ndarray, names: list[str], path: Path) -> Path:
    """ROC and precision-recall curves: ``scores`` (N, classes) one-vs-rest, or (N,) for a binary score."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    plt = pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(11, 4.6))
    if scores.ndim == 1:
        curves = [(names[-1] if names else "positive", scores, labels == 1)]
    else:
        order = np.argsort(-np.bincount(labels, minlength=scores.shape[1]))[:MAX_CLASSES_DRAWN]
        curves = [(names[c], scores[:, c], labels == c) for c in sorted(order)]
    for name, s, positive in curves:
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, s)
        precision, recall, _ = precision_recall_curve(positive, s)
        roc.plot(fpr, tpr, lw=1, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        pr.plot(recall, precision, lw=1, label=f"{name} (AP {auc(recall, precision):.3f})")
    roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    for ax in (roc, pr):
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def residuals(predicted: np.ndarray, target: np.ndarray, path: Path, unit: str = "") -> Path:
    plt = pyplot()
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 4.6))
    ax.scatter(target, predicted, s=6, alpha=0.5)
    lo, hi = float(min(target.min(), predicted.min())), float(max(target.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    ax.set(xlabel=f"target{unit}", ylabel=f"prediction{unit}", title="Predictions against targets")
    hist.hist(predicted - target, bins=40)
    hist.set(xlabel=f"residual (prediction - target){unit}", ylabel="examples", title="Residuals")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reconstructions(inputs: np.ndarray, outputs: np.ndarray, shape, path: Path, n: int = 10) -> Path:
    """The first ``n`` inputs (top row) above their reconstructions (bottom row), as images of ``shape``."""
    plt = pyplot()
    n = min(n, len(inputs))
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.8), squeeze=False)
    lo, hi = float(inputs[:n].min()), float(inputs[:n].max())
    for i in range(n):
        for row, images in enumerate((inputs, outputs)):
            axes[row][i].imshow(images[i].reshape(shape), cmap="gray", vmin=lo, vmax=hi)
            axes[row][i].axis("off")
    fig.suptitle("inputs (top) and reconstructions (bottom)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score_histogram(scores: np.ndarray, labels: np.ndarray, names: list[str], path: Path, what: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.histogram_bin_edges(scores, bins=40)
    for c in np.unique(labels):
        name = names[c] if 0 <= c < len(names) else str(c)
        ax.hist(scores[labels == c], bins=bins, alpha=0.6, label=f"{name} ({int((labels == c).sum())})")
    ax.set(xlabel=what, ylabel="examples", title=f"{what} by class")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
