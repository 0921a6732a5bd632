"""An image classifier as a plugin: a small convolutional network for ``kind="image"`` data.

Two 3x3 convolutions with ReLU and 2x2 max pooling, then a linear layer per class. It takes any
``(channels, height, width)`` input (``data=images`` reads a folder of images that way), so::

    zoo train plugins.dir=docs/examples model=small_cnn data=images data.path=my_images/

Loaded from a plugin folder like any ``*.py`` plugin; ``tests/test_data_files.py`` trains it on
the digits written as PNG files (docs/data.md gives the accuracy it reaches).
"""

import math

import torch
import torch.nn as nn

import zoo


class SmallCNN(nn.Module):
    """conv(3x3) -> ReLU -> maxpool(2) -> conv(3x3) -> ReLU -> maxpool(2) -> linear.

    Args:
        in_channels: channels of the input images (1 greyscale, 3 colour).
        classes: outputs, one per class.
        size: ``(height, width)`` of the input images.
        channels: feature maps of the two convolutions.
    """

    def __init__(self, in_channels: int, classes: int, size: tuple[int, int], channels: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
        )
        h, w = (math.ceil(math.ceil(s / 2) / 2) for s in size)
        self.head = nn.Linear(2 * channels * h * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def build_small_cnn(info: zoo.DataInfo, channels: int = 16) -> SmallCNN:
    if len(info.input_shape) != 3:
        raise ValueError(f"model=small_cnn needs images shaped (channels, height, width); the data gives {info.input_shape}")
    zoo.check_range("model.channels", channels, 1)
    c, h, w = info.input_shape
    return SmallCNN(c, info.output_dim, (h, w), channels)


@zoo.hookimpl
def zoo_architectures():
    return [zoo.Architecture(name="small_cnn", family="cnn", kinds=("image",), tasks=("classification",),
                             build=build_small_cnn, smoke={"channels": 4},
                             description="two convolutions and a linear layer: an image classifier")]
