"""Schemathesis hooks for tests/test_schemathesis.py (loaded through $SCHEMATHESIS_HOOKS): what a valid picture is.

A schema can say that a body is a PNG or a JPEG, not that it shows a digit; the server refuses a blank picture (its
answer would be noise), and Schemathesis' own sample image is a blank 1x1 PNG. These strategies draw real MNIST
test digits instead, photographed as a person would send them, in the sizes and formats the server takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from serving import mnist_digits, photo_of

DIGITS, _ = mnist_digits(Path(os.environ["ZOO_DATA_DIR"]), 16)


def pictures(fmt: str) -> st.SearchStrategy[bytes]:
    """Photos of MNIST digits in `fmt` (PNG or JPEG), 28 to 300 pixels a side, in colour or grey."""
    return st.builds(
        lambda index, side, colour: photo_of(DIGITS[index], fmt, side, colour),
        st.integers(0, len(DIGITS) - 1),
        st.integers(28, 300),
        st.booleans(),
    )


schemathesis.openapi.media_type("image/png", pictures("PNG"))
schemathesis.openapi.media_type("image/jpeg", pictures("JPEG"))
schemathesis.openapi.format("binary", pictures("PNG"))  # the multipart form's image field
