"""Autoencoder family: learn to compress and reconstruct data (section 3 of the notes).

An autoencoder is an encoder (input -> compact representation, the *latent code* or bottleneck)
followed by a decoder (code -> reconstruction), trained to give back its own input: the loss is
the mean squared error between the reconstruction and the input (task ``reconstruction``). The
notes list three uses, and each has a model or a set-up here:

* representation learning: ``autoencoder`` (dense) and ``conv_autoencoder`` (convolutional, for
  images); ``encode(x)`` returns the latent code, and the run's report plots it in 2-D;
* denoising: ``denoising_autoencoder`` corrupts its input while training (Gaussian noise or
  masking) and still has to reconstruct the clean input (Vincent et al., 2008,
  https://www.cs.toronto.edu/~larocheh/publications/icml-2008-denoising-autoencoders.pdf);
* anomaly detection (task ``anomaly``): train on normal data only; an example the model
  reconstructs badly is unlike the training data, so the reconstruction error is the anomaly
  score, measured by ROC-AUC on validation/test splits that mix normal and anomalous examples.

The datasets they train on are in ``zoo_builtins.tabular`` (``digits_recon``, ``digits_anomaly``,
``breast_cancer_anomaly``) and ``zoo_builtins.image`` (``digits_image``, ``digits_image_anomaly``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn

import zoo

NOISE_TYPES = ("gaussian", "mask")


# ------------------------------------------------------------------------------ building blocks

def _dense_stack(sizes: list[int], activation: str) -> list[nn.Module]:
    """Linear layers between consecutive ``sizes``, each followed by the activation."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), zoo.activation(activation)]
    return layers


def _corrupt(x: torch.Tensor, noise: float, noise_type: str) -> torch.Tensor:
    """Gaussian noise of standard deviation ``noise``, or zero each value with probability ``noise``."""
    if noise_type == "mask":
        keep = torch.rand_like(x) >= noise
        return x * keep
    return x + noise * torch.randn_like(x)


# ------------------------------------------------------------------------------ main classes

class Autoencoder(nn.Module):
    """Base class: ``forward(x) = decode(encode(corrupt(x)))``, shaped like ``x``.

    Subclasses build ``self.encoder`` (input -> ``(B, latent_dim)``) and ``self.decoder``
    (code -> input shape). The input is corrupted only while training and only when
    ``noise > 0``; in eval mode the model reconstructs its input as it is.

    Args:
        input_shape: the shape of one example, without the batch dimension.
        latent_dim: size of the bottleneck code.
        noise: corruption strength while training (0: a plain autoencoder).
        noise_type: ``gaussian`` (add noise of std ``noise``) or ``mask`` (zero each input value
            with probability ``noise``).
    """

    def __init__(self, input_shape, latent_dim: int, noise: float, noise_type: str):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.noise, self.noise_type = noise, noise_type
        self.encoder: nn.Module = nn.Identity()
        self.decoder: nn.Module = nn.Identity()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent code of each example, ``(B, latent_dim)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The reconstruction of each code, ``(B, *input_shape)``."""
        return self.decoder(z).reshape(-1, *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise > 0:
            x = _corrupt(x, self.noise, self.noise_type)
        return self.decode(self.encode(x))

    def _noise_repr(self) -> str:
        return f", noise={self.noise_type}:{self.noise:g}" if self.noise > 0 else ""


class DenseAutoencoder(Autoencoder):
    """Fully connected encoder -> bottleneck -> mirrored decoder.

    Args:
        input_shape: the shape of one example (flattened to ``prod(input_shape)`` features).
        hidden_sizes: the encoder's hidden layers, e.g. ``[128, 64]``; the decoder mirrors them.
            ``[]`` gives a linear autoencoder (with MSE it learns the PCA subspace).
        latent_dim: size of the bottleneck code (no activation on it: a linear code).
        activation: ``relu``, ``tanh``, ``sigmoid``, ``gelu`` or ``identity`` for hidden layers.
        output_activation: on the reconstruction: ``identity`` for standardised features,
            ``sigmoid`` for values in [0, 1].
        noise, noise_type: input corruption while training (see :class:`Autoencoder`).
    """

    def __init__(self, input_shape, hidden_sizes, latent_dim: int, activation: str, output_activation: str,
                 noise: float, noise_type: str):
        super().__init__(input_shape, latent_dim, noise, noise_type)
        features = math.prod(self.input_shape)
        self.sizes = [features, *hidden_sizes, latent_dim]
        self.encoder = nn.Sequential(nn.Flatten(), *_dense_stack(self.sizes[:-1], activation),
                                     nn.Linear(self.sizes[-2], latent_dim))
        back = self.sizes[::-1]
        self.decoder = nn.Sequential(*_dense_stack(back[:-1], activation), nn.Linear(back[-2], features),
                                     zoo.activation(output_activation, "model.output_activation"))

    def __repr__(self) -> str:
        arrow = " -> ".join(map(str, self.sizes))
        return f"{type(self).__name__}({arrow} -> ... -> {self.sizes[0]}{self._noise_repr()})"


class ConvAutoencoder(Autoencoder):
    """Strided convolutions down to a dense bottleneck, transposed convolutions back up.

    Each entry of ``channels`` is a 3x3 convolution with stride 2 (halving height and width,
    rounding up); the decoder mirrors them with 3x3 transposed convolutions whose output padding
    restores the exact size, so any image size works (8x8 digits: 8 -> 4 -> 2 -> 4 -> 8).

    Args:
        input_shape: ``(C, H, W)``.
        channels: output channels of each downsampling convolution, e.g. ``[16, 32]``.
        latent_dim: size of the bottleneck code.
        activation: after every convolution and on the decoder's dense layer.
        output_activation: on the reconstruction (``sigmoid`` for pixels in [0, 1]).
        noise, noise_type: input corruption while training (see :class:`Autoencoder`).
    """

    def __init__(self, input_shape, channels, latent_dim: int, activation: str, output_activation: str,
                 noise: float, noise_type: str):
        super().__init__(input_shape, latent_dim, noise, noise_type)
        c, h, w = self.input_shape
        sizes = [(h, w)]
        for _ in channels:
            sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
        chans = [c, *channels]
        down: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            down += [nn.Conv2d(a, b, 3, stride=2, padding=1), zoo.activation(activation)]
        self.bottom = (chans[-1], *sizes[-1])
        flat = math.prod(self.bottom)
        self.encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, latent_dim))
        up: list[nn.Module] = [nn.Linear(latent_dim, flat), zoo.activation(activation), nn.Unflatten(1, self.bottom)]
        for i in range(len(channels), 0, -1):
            (hi, wi), (ho, wo) = sizes[i], sizes[i - 1]
            pad = (ho - (2 * hi - 1), wo - (2 * wi - 1))  # 0 or 1: gives back the exact size
            up.append(nn.ConvTranspose2d(chans[i], chans[i - 1] if i > 1 else chans[1], 3, stride=2,
                                         padding=1, output_padding=pad))
            up.append(zoo.activation(activation))
        up += [nn.Conv2d(chans[1], c, 3, padding=1), zoo.activation(output_activation, "model.output_activation")]
        self.decoder = nn.Sequential(*up)
        self.channels = list(channels)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return (f"ConvAutoencoder({shape} -> conv{self.channels} -> {'x'.join(map(str, self.bottom))} -> "
                f"{self.latent_dim} -> ... -> {shape}{self._noise_repr()})")


# ------------------------------------------------------------------------------ builders

def _check_sizes(key: str, sizes) -> list[int]:
    sizes = list(sizes)
    if any(s < 1 for s in sizes):
        raise ValueError(f"{key}={sizes} is invalid: every size must be an integer >= 1")
    return sizes


def _check_common(latent_dim: int, noise: float, noise_type: str, activation: str, output_activation: str) -> None:
    zoo.check_range("model.latent_dim", latent_dim, 1)
    zoo.check_range("model.noise", noise, 0)
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"model.noise_type={noise_type!r} is not a noise type: choose one of {', '.join(NOISE_TYPES)}")
    if noise_type == "mask":
        zoo.check_range("model.noise", noise, 0, 1, high_open=True)
    zoo.activation(activation)  # checked here too: a linear autoencoder (hidden_sizes=[]) never uses it
    zoo.activation(output_activation, "model.output_activation")


def build_autoencoder(info: zoo.DataInfo, hidden_sizes=(128, 64), latent_dim: int = 16, activation: str = "relu",
                      output_activation: str = "identity") -> DenseAutoencoder:
    return _dense(info, hidden_sizes, latent_dim, activation, output_activation, 0.0, "gaussian")


def build_denoising_autoencoder(info: zoo.DataInfo, hidden_sizes=(128, 64), latent_dim: int = 16,
                                activation: str = "relu", output_activation: str = "identity", noise: float = 0.2,
                                noise_type: str = "gaussian") -> DenseAutoencoder:
    zoo.check_range("model.noise", noise, 0, low_open=True)
    return _dense(info, hidden_sizes, latent_dim, activation, output_activation, noise, noise_type)


def _dense(info, hidden_sizes, latent_dim, activation, output_activation, noise, noise_type) -> DenseAutoencoder:
    hidden_sizes = _check_sizes("model.hidden_sizes", hidden_sizes)
    _check_common(latent_dim, noise, noise_type, activation, output_activation)
    return DenseAutoencoder(info.input_shape, hidden_sizes, latent_dim, activation, output_activation, noise, noise_type)


def build_conv_autoencoder(info: zoo.DataInfo, channels=(16, 32), latent_dim: int = 16, activation: str = "relu",
                           output_activation: str = "identity", noise: float = 0.0,
                           noise_type: str = "gaussian") -> ConvAutoencoder:
    if len(info.input_shape) != 3:
        raise ValueError(f"model=conv_autoencoder needs images shaped (C, H, W); the data gives {tuple(info.input_shape)}")
    channels = _check_sizes("model.channels", channels)
    if not channels:
        raise ValueError("model.channels=[] is empty: give at least one convolution, e.g. [16,32]")
    _check_common(latent_dim, noise, noise_type, activation, output_activation)
    return ConvAutoencoder(info.input_shape, channels, latent_dim, activation, output_activation, noise, noise_type)


# ------------------------------------------------------------------------------ report

def _pca_2d(z: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Codes as 2-D points: as they are when the bottleneck has 1 or 2 units, else PCA."""
    if z.shape[1] == 1:
        return torch.cat([z, torch.zeros_like(z)], 1), "code"
    if z.shape[1] == 2:
        return z, "code"
    zc = z - z.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(zc, full_matrices=False)
    return zc @ v[:2].T, "PCA of code"


def _labels(info: zoo.DataInfo, y: torch.Tensor) -> tuple[torch.Tensor, dict[int, str]]:
    """One integer label per example and its name; a single group when the targets are not labels."""
    if y.numel() != len(y) or y.is_floating_point():
        return torch.zeros(len(y), dtype=torch.long), {0: "all"}
    y = y.reshape(-1).long()
    fixed = zoo.get_task(info.task).target_names  # anomaly: 0 normal, 1 anomaly
    if fixed:
        return y, dict(enumerate(fixed))
    names = list(info.meta.get("class_names", []))
    return y, {int(c): (names[int(c)] if 0 <= int(c) < len(names) else str(int(c))) for c in y.unique()}


def report(model: Autoencoder, splits: zoo.Splits, out_dir, max_examples: int = 2000) -> list[Path]:
    """Figures of the test split: inputs against reconstructions (image data, meta ``image_shape``),
    the latent codes in 2-D coloured by label, and for anomaly data the reconstruction errors of
    normal and anomalous examples. Returns the paths of the PNG files it wrote."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = splits.info
    x, y = next(iter(splits.test.batches(None)))
    x, y = x[:max_examples], y[:max_examples]
    noise = float(getattr(model, "noise", 0.0))
    with torch.no_grad():
        recon = model(x).reshape(x.shape).float().cpu()
        z = model.encode(x).float().reshape(len(x), -1).cpu() if hasattr(model, "encode") else None
        noisy = denoised = None
        if noise > 0:  # what the model saw while training, and how it cleans it up
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                noisy = _corrupt(x.cpu(), noise, model.noise_type).to(x.device)
            denoised = model(noisy).reshape(x.shape).float().cpu()
            noisy = noisy.float().cpu()
    x = x.float().cpu()
    y, names = _labels(info, y.cpu())
    plt = zoo.pyplot()
    paths: list[Path] = []

    shape = info.meta.get("image_shape")
    if shape is not None and math.prod(shape) == x[0].numel():
        if info.task == "anomaly":  # half normal, half anomalous examples, so both show
            pick = torch.cat([torch.nonzero(y == 0).flatten()[:5], torch.nonzero(y == 1).flatten()[:5]])
        else:
            pick = torch.arange(min(10, len(x)))
        rows = [("input", x), ("recon", recon)]
        if noisy is not None:
            rows += [(f"{model.noise_type}\n{noise:g}", noisy), ("denoised", denoised)]
        fig, axes = plt.subplots(len(rows), len(pick), figsize=(1.1 * len(pick), 1.25 * len(rows) + 0.2),
                                 squeeze=False)
        err = (recon - x).pow(2).flatten(1).mean(1)
        lo, hi = info.meta.get("value_range", (None, None))  # the same grey scale for every image
        for j, i in enumerate(pick.tolist()):
            for r, (_, images) in enumerate(rows):
                ax = axes[r][j]
                ax.imshow(images[i].reshape(*shape[-2:]).numpy(), cmap="gray_r", vmin=lo, vmax=hi)
                ax.set_xticks([]), ax.set_yticks([])
            axes[0][j].set_title(names.get(int(y[i]), str(int(y[i]))), fontsize=8)
            axes[1][j].set_xlabel(f"mse {err[i]:.3f}", fontsize=7)
        for r, (label, _) in enumerate(rows):
            axes[r][0].set_ylabel(label, fontsize=8)
        fig.suptitle("Test inputs and their reconstructions", fontsize=9)
        fig.tight_layout()
        path = out_dir / "reconstructions.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    if z is not None:
        pts, what = _pca_2d(z)
        fig, ax = plt.subplots(figsize=(6, 5))
        cmap = plt.get_cmap("tab10")
        for k, c in enumerate(sorted(names)):
            m = y == c
            ax.scatter(pts[m, 0].numpy(), pts[m, 1].numpy(), s=10, alpha=0.7, color=cmap(k % 10), label=names[c])
        ax.set(xlabel=f"{what} 1", ylabel=f"{what} 2",
               title=f"Latent codes of the test split ({z.shape[1]}-D bottleneck)")
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
        fig.tight_layout()
        path = out_dir / "latent.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    if info.task == "anomaly":
        err = (recon - x).pow(2).flatten(1).mean(1)
        fig, ax = plt.subplots(figsize=(6, 4))
        err = err.clamp_min(1e-12)  # log-spaced bins: scores often span orders of magnitude
        e0, e1 = math.log10(float(err.min())), math.log10(float(err.max()))
        bins = torch.logspace(e0, max(e1, e0 + 1e-3), 40).numpy()
        for c in (0, 1):
            ax.hist(err[y == c].numpy(), bins=bins, alpha=0.6, label=names[c])
        ax.set_xscale("log")
        ax.set(xlabel="reconstruction error (anomaly score, log scale)", ylabel="examples",
               title="Reconstruction error on the test split")
        ax.legend()
        fig.tight_layout()
        path = out_dir / "anomaly_scores.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------ registration

@zoo.hookimpl
def zoo_architectures():
    tasks = ("reconstruction", "anomaly")
    small = {"hidden_sizes": [16], "latent_dim": 4}
    return [
        zoo.Architecture(
            name="autoencoder", family="autoencoder", kinds=("tabular", "image"), tasks=tasks,
            build=build_autoencoder, report=report, smoke=small,
            description="dense encoder -> bottleneck -> mirrored decoder, trained to reconstruct its input",
        ),
        zoo.Architecture(
            name="denoising_autoencoder", family="autoencoder", kinds=("tabular", "image"), tasks=tasks,
            build=build_denoising_autoencoder, report=report, smoke=small,
            description="dense autoencoder that reconstructs the clean input from a corrupted one",
        ),
        zoo.Architecture(
            name="conv_autoencoder", family="autoencoder", kinds=("image",), tasks=tasks,
            build=build_conv_autoencoder, report=report, smoke={"channels": [4], "latent_dim": 4},
            description="strided convolutions -> bottleneck -> transposed convolutions, for images",
        ),
    ]
