"""Turning digit pictures and pixel arrays into MNIST-style model input: [N, 1, 28, 28] float32 in [0, 1].

Pure functions, no HTTP: the server, the CLI or a notebook can all call them. MNIST digits are white on
black, their bounding box fitted into 20x20 (aspect ratio kept) and placed in 28x28 by centre of mass;
pictures of any other size, colour or polarity are brought to that form the same way.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from zoo.core.errors import InvalidInputError

SIDE, BOX = 28, 20
IMAGE_FORMATS = ("PNG", "JPEG")
# The largest picture accepted, by its header: a 4096x4096 PNG of any mode is answered in well under a second and
# ~250 MB here (benchmarks/README.md), and a 12-megapixel phone photo (4032x3024) fits.
DEFAULT_MAX_PIXELS = 4096 * 4096
# Pictures are box-averaged to at most this many pixels a side before any conversion to float: a digit that fills a
# tenth of the picture keeps a 100-pixel box, five times what its 20x20 MNIST box needs.
WORK_SIDE = 1024
# A pixel counts as ink once it is this far from the background (on a 0-1 scale), when finding the digit's box.
INK_THRESHOLD = 0.2


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A PNG or JPEG as greyscale float32 in [0, 1], shape [height, width] with at most WORK_SIDE pixels a side;
    transparency is drawn as background.

    Raises InvalidInputError for an empty, truncated or non-image body and for images over `max_pixels`
    (checked from the header, before anything is decoded, so a small file cannot expand into gigabytes).
    """
    if not data:
        raise InvalidInputError("expected a PNG or JPEG image, got an empty body")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"expected an image of at most {max_pixels} pixels, got {width}x{height} = {width * height}"
                )
            if image.format == "JPEG":
                # JPEG decodes at 1/2, 1/4 or 1/8 scale, straight to grey, for a fraction of the time and memory.
                image.draft("L", _shrunk_size(image.size))
            image.load()
    except InvalidInputError:  # over max_pixels (a ValueError, which the last clause would take as damage)
        raise
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"expected a PNG or JPEG image, got {len(data)} bytes that are neither (starting {data[:8]!r})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInputError(
            f"expected an image of at most {max_pixels} pixels, got a decompression bomb ({error})"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for truncated or corrupt files
        raise InvalidInputError(f"expected a complete PNG or JPEG image, got a damaged one: {error}") from None
    return _greyscale(image)


def _shrunk_size(size: tuple[int, int]) -> tuple[int, int]:
    factor = max(1, -(-max(size) // WORK_SIDE))
    return -(-size[0] // factor), -(-size[1] // factor)


def _shrink(image: Image.Image) -> Image.Image:
    """`image` box-averaged to at most WORK_SIDE pixels a side, in its own 8-bit mode."""
    factor = -(-max(image.size) // WORK_SIDE)
    return image.reduce(factor) if factor > 1 else image


def _greyscale(image: Image.Image) -> np.ndarray:
    """Any picture as grey float32 in [0, 1], shrunk and composited in 8 bits first, so that a large picture costs
    a few bytes a pixel, never the 16-32 of a float RGBA copy."""
    # "transparency" in info: a palette's transparent colour, or the colour key (tRNS) of a grey or RGB PNG.
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        # Premultiplied grey and alpha, so that shrinking averages the ink, not the colours hidden under alpha 0.
        shrunk = _shrink(image.convert("LA").convert("La"))
        premultiplied, alpha = (np.asarray(band, dtype=np.float32) / np.float32(255) for band in shrunk.split())
        # A canvas drawing is strokes on transparency: put the strokes on whichever of black or white they
        # stand out from, judged by the strokes' own brightness.
        weight = float(alpha.sum())
        ink_brightness = float(premultiplied.sum() / weight) if weight else 0.0
        background = 0.0 if ink_brightness > 0.5 else 1.0
        return premultiplied + np.float32(background) * (1.0 - alpha)
    grey = image if image.mode == "L" else image.convert("L")
    return np.asarray(_shrink(grey), dtype=np.float32) / np.float32(255)


def mnist_from_image(grey: np.ndarray) -> np.ndarray:
    """A greyscale picture of one digit as a [1, 28, 28] MNIST-style image: white on black, box 20x20, centred
    by mass."""
    ink = white_on_black(grey)
    low, high = float(np.median(_border(ink))), float(ink.max())
    if high - low < 1e-3:
        raise InvalidInputError(f"expected a picture of a digit, got a blank {grey.shape[1]}x{grey.shape[0]} image")
    ink = np.clip((ink - low) / (high - low), 0.0, 1.0)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    digit = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = digit.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    fitted = np.clip(fitted, 0.0, 1.0)
    return _place_by_mass(fitted)[None]


def _place_by_mass(fitted: np.ndarray) -> np.ndarray:
    """Paste `fitted` into a 28x28 black image so that its centre of mass lands on the centre."""
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    total = float(fitted.sum())
    if not total:  # nothing to place (values are clipped at 0, so a zero sum is an all-zero box)
        return out
    height, width = fitted.shape
    ys, xs = np.indices(fitted.shape)
    centre_y, centre_x = float((ys * fitted).sum() / total), float((xs * fitted).sum() / total)
    top = int(np.clip(round((SIDE - 1) / 2 - centre_y), 0, SIDE - height))
    left = int(np.clip(round((SIDE - 1) / 2 - centre_x), 0, SIDE - width))
    out[top : top + height, left : left + width] = fitted
    return out


def _border(image: np.ndarray) -> np.ndarray:
    """The outermost pixels of each image (last two axes), as one axis."""
    return np.concatenate([image[..., 0, :], image[..., -1, :], image[..., 1:-1, 0], image[..., 1:-1, -1]], axis=-1)


def white_on_black(images: np.ndarray) -> np.ndarray:
    """Each image (values in [0, 1], last two axes height and width) inverted when its border is mostly bright."""
    border = _border(images)
    # "More than half bright" is the median's test without its sort (a fifth of the cost on one image).
    bright = np.count_nonzero(border > 0.5, axis=-1) * 2 > border.shape[-1]
    return np.where(bright[..., None, None], 1.0 - images, images).astype(np.float32, copy=False)


def image_to_batch(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A PNG or JPEG body as a [1, 1, 28, 28] batch; a 28x28 greyscale image is taken as MNIST already is."""
    return grey_to_batch(decode_image(data, max_pixels))


def grey_to_batch(grey: np.ndarray) -> np.ndarray:
    """A greyscale picture in [0, 1] as a [1, 1, 28, 28] batch: 28x28 as MNIST has it, anything else made so."""
    if grey.shape == (SIDE, SIDE):
        return white_on_black(grey)[None, None]
    return mnist_from_image(grey)[None]


def picture_to_batch(picture: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A digit as a [N, 1, 28, 28] batch from a PIL image, PNG/JPEG bytes, a file path, or pixel values
    (anything pixels_to_batch takes): the server's own preprocessing, for use in Python."""
    if isinstance(picture, Image.Image):
        return grey_to_batch(_greyscale(picture))
    if isinstance(picture, (bytes, bytearray)):
        return image_to_batch(bytes(picture), max_pixels)
    if isinstance(picture, (str, os.PathLike)):
        return image_to_batch(Path(picture).read_bytes(), max_pixels)
    return pixels_to_batch(np.asarray(picture).tolist())[0]


def pixels_to_batch(values: Any) -> tuple[np.ndarray, bool]:
    """JSON pixel values as a [N, 1, 28, 28] batch in [0, 1], and whether they came as a batch.

    Accepts one image (28x28 or 784 values) or a batch ([N, 28, 28], [N, 784] or [N, 1, 28, 28]), in 0-255
    (when any value is over 1) or 0-1, white on black or black on white.
    """
    array = numeric_array(values, "pixels")
    shape = array.shape
    if shape in ((SIDE, SIDE), (SIDE * SIDE,)):
        array, batched = array.reshape(1, 1, SIDE, SIDE), False
    elif shape[1:] in ((SIDE, SIDE), (SIDE * SIDE,), (1, SIDE, SIDE)):  # N > 0: numeric_array refuses empty arrays
        array, batched = array.reshape(shape[0], 1, SIDE, SIDE), True
    else:
        raise InvalidInputError(
            "expected pixels as one image (28x28 or 784 values) or a batch ([N, 28, 28], [N, 784] or "
            f"[N, 1, 28, 28]), got shape {list(shape)}"
        )
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise InvalidInputError(f"expected pixel values in 0-255 or 0-1, got values from {low:g} to {high:g}")
    if high > 1:
        array = array / 255.0
    return white_on_black(array), batched


def numeric_array(values: Any, what: str) -> np.ndarray:
    """`values` (nested lists of numbers) as a finite float32 array, or InvalidInputError saying what was wrong."""
    leaf = values
    while isinstance(leaf, list) and leaf:
        leaf = leaf[0]
    # numpy would quietly read True as 1 and "7" as 7. Only the first value is checked: numpy's own choice of dtype
    # would tell a string anywhere, but it sizes every value to the longest string (a 100 KB body made 400 MB), and a
    # scan of every value would double the cost of reading a digit.
    if isinstance(leaf, (bool, str)):
        raise InvalidInputError(
            f"expected {what} as numbers, got {'booleans' if isinstance(leaf, bool) else 'strings'}"
        )
    try:
        with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
            array = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as error:
        # Told apart by numpy's message, never by reading the values again (which could cost what the above saves).
        came = ("strings" if "convert string" in str(error) else
                "ragged nested lists" if "inhomogeneous" in str(error) else "values that are not all numbers")
        raise InvalidInputError(f"expected {what} as a rectangular array of numbers, got {came}") from None
    if array.size == 0:
        raise InvalidInputError(
            f"expected {what} with at least one value, got an empty array of shape {list(array.shape)}"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError(f"expected finite {what}, got NaN or infinity (or a number too large for float32)")
    return array
