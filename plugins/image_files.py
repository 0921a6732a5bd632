"""Images read from the user's folder (kind ``image``): ``images``.

The usual image-folder layout: ``data.path`` holds one sub-folder per class, named after it, with
that class's images inside (any format Pillow reads). Every image is resized to ``data.size``
(``[height, width]``, or one number for a square; default: the first image's size) and read as
greyscale (``data.mode=L``, 1 channel) or colour (``RGB``, 3 channels); ``auto`` takes the mode the
images share and refuses a folder that mixes them. Pixels are scaled to [0, 1]; inputs are
``(channels, height, width)`` tensors, a classification task for convolutional networks, which
``mlp`` reads flattened. The split is 70/15/15 by the seed, stratified by class.

Larger than ``data.memory_budget`` (or with ``data.in_memory=false``) the images are decoded once
into a temporary file and read from it while training (:class:`zoo.StreamSplit`). Torchvision is
not needed (it does not install beside the CPU torch build here).
"""

from __future__ import annotations

import numpy as np

import zoo
from zoo_builtins.files import check_classes, check_rows, choose, stream_settings, where

FOLDER = "a folder with one sub-folder of images per class"
MODES = ("auto", "L", "RGB")
GREY = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}  # Pillow's modes that read as greyscale
DECODE_CHUNK = 256


def _visible(p) -> bool:
    return not p.name.startswith(".")


def image_files(p) -> tuple[list[str], list[tuple[str, int]]]:
    """The class names and every ``(file, class id)``; a one-line error for a folder that is not laid out by class."""
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and _visible(d))
    if len(classes) < 2:
        loose = sum(1 for f in p.iterdir() if f.is_file() and _visible(f))
        found = f"{len(classes)} class folder{'' if len(classes) == 1 else 's'}" + (f" ({classes[0]})" if classes else "")
        extra = f" and {loose} files at the top" if loose else ""
        raise ValueError(f"{where(p)} has {found}{extra}: it needs one sub-folder per class, at least two, "
                         f"with that class's images inside")
    files = []
    for i, c in enumerate(classes):
        inside = sorted(f for f in (p / c).rglob("*")
                        if f.is_file() and not any(q.startswith(".") for q in f.relative_to(p / c).parts))
        if not inside:
            raise ValueError(f"class folder {c!r} of {where(p)} has no images: remove it or add its images")
        files += [(str(f), i) for f in inside]
    return classes, files


def _open(p, f: str):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(f)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{where(p)}: {_rel(p, f)!r} is not an image Pillow can read "
                         f"({type(exc).__name__}): remove it or replace it") from None


def _rel(p, f: str) -> str:
    from pathlib import Path

    return Path(f).relative_to(p).as_posix()


def _family(mode: str) -> str:
    return "L" if mode in GREY else "RGB"


def survey(p, files, mode: str) -> tuple[str, tuple[int, int]]:
    """The mode to read every image in and the first image's ``(height, width)``; mixed modes are refused under ``auto``."""
    seen: dict[str, str] = {}
    size = None
    for f, _ in files:
        with _open(p, f) as im:
            size = size or (im.height, im.width)
            seen.setdefault(_family(im.mode), _rel(p, f))
    if mode == "auto" and len(seen) > 1:
        raise ValueError(f"{where(p)} holds images of mixed modes: {seen['L']!r} is greyscale, {seen['RGB']!r} is "
                         f"colour: set data.mode=L or data.mode=RGB to convert them all")
    return (next(iter(seen)) if mode == "auto" else mode), size


def _size(size, first) -> tuple[int, int]:
    if size is None:
        return first
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    if (not isinstance(size, (list, tuple)) or len(size) != 2 or
            not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise ValueError(f"data.size={size!r} is invalid: expected [height, width] in pixels (or one number for a "
                         f"square), or null for the first image's size")
    return int(size[0]), int(size[1])


def decode(p, files, mode: str, size: tuple[int, int], writer) -> np.ndarray | zoo.ArrayFile:
    """Every image as ``(channels, height, width)`` bytes, written to ``writer`` a chunk at a time."""
    from PIL import Image

    h, w = size
    chunk = []
    for f, _ in files:
        with _open(p, f) as im:
            try:
                im = im.convert(mode)
                if (im.height, im.width) != (h, w):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                pixels = np.asarray(im, dtype=np.uint8)
            except (OSError, ValueError) as exc:  # a truncated or corrupt file fails when it is decoded
                raise ValueError(f"{where(p)}: {_rel(p, f)!r} is a corrupt image ({str(exc)[:120]}): "
                                 f"remove it or replace it") from None
        chunk.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
        if len(chunk) == DECODE_CHUNK:
            writer.append(np.stack(chunk))
            chunk = []
    if chunk:
        writer.append(np.stack(chunk))
    return writer.finish()


def load_images(seed: int, path=None, size=None, mode: str = "auto", in_memory="auto", memory_budget="auto",
                workers="auto") -> zoo.Splits:
    p = zoo.data_path(path, "folder", FOLDER)
    choose("data.mode", mode, MODES)
    stream_settings(workers)
    classes, files = image_files(p)
    ids = np.array([c for _, c in files], dtype=np.int64)
    check_rows(len(files), p, what="images")
    check_classes(ids, classes, p, label="the class folders", unit="images")
    mode, first = survey(p, files, mode)
    h, w = _size(size, first)
    channels = 1 if mode == "L" else 3
    keep = zoo.keep_in_memory(len(files) * channels * h * w * 4, in_memory, memory_budget)
    x = decode(p, files, mode, (h, w), zoo.RowWriter((channels, h, w), np.uint8, not keep))
    prep = {"reader": "images", "size": [h, w], "mode": mode, "channels": channels, "class_names": classes}
    meta = {"source": zoo.source_of(p), "preprocessing": prep, "class_names": classes, "image_shape": (h, w)}
    return zoo.array_splits(x, ids, seed=seed, kind="image", task="classification", output_dim=len(classes),
                            meta=meta, standardize=(0.0, 255.0), stratify=True, workers=workers)


@zoo.hookimpl
def zoo_datasets():
    from importlib import resources

    sample = resources.files("zoo_builtins") / "data" / "samples" / "digits_png"
    return [
        zoo.Dataset(name="images", kind="image", task="classification", load=load_images,
                    smoke={"path": str(sample)},
                    description="a folder of images, one sub-folder per class (data.path, data.size, data.mode "
                                "L or RGB): classification; streamed when larger than data.memory_budget"),
    ]
