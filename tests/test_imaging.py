"""The image reader (zoo/inputs/imaging.py) called directly: pictures and pixel arrays to MNIST-style batches.

Real pictures made with PIL, real MNIST digits; tests/test_serve.py and tests/test_hostile.py send the same kinds of
picture through the server. Fast, with no fixture: benchmarks/mutation.sh runs these once per mutant.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import encoded
from PIL import Image, ImageDraw

from zoo.core.data import mnist_test_images
from zoo.core.errors import InvalidInputError
from zoo.inputs import imaging


def refused(match: str):
    return pytest.raises(InvalidInputError, match=match)


def bar(width: int = 200, height: int = 300, ink: int = 0, paper: int = 255) -> Image.Image:
    """A vertical bar (a "1") of `ink` on `paper`, left of centre and high."""
    picture = Image.new("L", (width, height), paper)
    ImageDraw.Draw(picture).rectangle((width // 4, height // 6, width // 4 + width // 10, height // 2), fill=ink)
    return picture


@pytest.fixture(scope="module")
def digits(data_dir) -> np.ndarray:
    """The first ten MNIST test digits, uint8 [10, 28, 28], white on black: read from the IDX file itself (after its
    16-byte header), as zoo.core.data's loader fingerprints all 70,000 first (some 4 s)."""
    with open(data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte", "rb") as file:
        file.seek(16)
        return np.frombuffer(file.read(10 * 784), dtype=np.uint8).reshape(10, 28, 28)


# --- decode_image


def test_decode_image_reads_png_and_jpeg_as_grey_in_0_1():
    grey = imaging.decode_image(encoded(bar()))
    assert grey.dtype == np.float32 and grey.shape == (300, 200)
    assert grey.min() == 0.0 and grey.max() == 1.0
    assert grey[100, 55] == 0.0 and grey[0, 0] == 1.0
    jpeg = imaging.decode_image(encoded(bar(), "JPEG", quality=95))
    assert jpeg.shape == (300, 200) and np.abs(jpeg - grey).mean() < 0.02


def test_the_default_pixel_limit_is_4096_squared():
    assert imaging.DEFAULT_MAX_PIXELS == 4096 * 4096
    with refused("^expected an image of at most 16777216 pixels, got 4097x4096 = 16781312$"):
        imaging.decode_image(encoded(Image.new("1", (4097, 4096))))  # a 2 KB file, refused from its header


def test_decode_image_takes_max_pixels_exactly():
    picture = encoded(Image.new("L", (10, 20), 0))
    assert imaging.decode_image(picture, max_pixels=200).shape == (20, 10)
    with refused("^expected an image of at most 199 pixels, got 10x20 = 200$"):
        imaging.decode_image(picture, max_pixels=199)


def test_decode_image_refuses_what_is_not_a_png_or_jpeg():
    with refused("^expected a PNG or JPEG image, got an empty body$"):
        imaging.decode_image(b"")
    with refused(r"^expected a PNG or JPEG image, got 11 bytes that are neither \(starting b'GIF89a\\x01\\x00'\)$"):
        imaging.decode_image(b"GIF89a\x01\x00\x01\x00\x00")
    with refused(r"^expected a PNG or JPEG image, got \d+ bytes that are neither \(starting b'BM"):
        imaging.decode_image(encoded(bar(), "BMP"))  # PIL reads BMP; the server takes only what it documents
    whole = encoded(bar())
    with refused("^expected a complete PNG or JPEG image, got a damaged one: "):
        imaging.decode_image(whole[: len(whole) // 2])


def test_decode_image_refuses_a_decompression_bomb_from_its_header():
    # Past PIL's own limit (twice Image.MAX_IMAGE_PIXELS) with max_pixels raised above it: PIL's error, reworded.
    side = 20_000
    header = encoded(Image.new("1", (side, side)))
    with refused(r"^expected an image of at most \d+ pixels, got a decompression bomb \("):
        imaging.decode_image(header, max_pixels=side * side + 1)


def test_large_pictures_are_shrunk_to_work_side_while_read():
    grey = imaging.decode_image(encoded(bar(3000, 1500)))
    assert grey.shape == (500, 1000)  # box-averaged by 3
    # A JPEG is decoded at 1/2 scale (1500x750, the draft at least the size asked for) and then box-averaged by 2.
    assert imaging.decode_image(encoded(bar(3000, 1500), "JPEG")).shape == (375, 750)
    assert imaging.decode_image(encoded(bar(1024, 100))).shape == (100, 1024)  # at WORK_SIDE: untouched
    assert imaging.decode_image(encoded(bar(1025, 100))).shape == (50, 513)


def test_shrunk_size_rounds_up():
    assert imaging._shrunk_size((1024, 10)) == (1024, 10)
    assert imaging._shrunk_size((1025, 10)) == (513, 5)
    assert imaging._shrunk_size((3000, 1499)) == (1000, 500)
    assert imaging._shrunk_size((5, 7)) == (5, 7)


# --- colour, transparency and polarity


@pytest.mark.parametrize("mode", ["RGB", "P", "1", "L"])
def test_every_mode_reads_as_the_same_grey(mode):
    picture = bar()
    grey = imaging.decode_image(encoded(picture.convert(mode)))
    np.testing.assert_allclose(grey, np.asarray(picture, np.float32) / 255, atol=1 / 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_strokes_on_transparency_are_put_on_the_background_they_stand_out_from(mode):
    dark = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(dark).rectangle((40, 20, 50, 80), fill=(0, 0, 0, 255))  # black strokes: on white
    grey = imaging.decode_image(encoded(dark.convert(mode)))
    assert grey[50, 45] == 0.0 and grey[0, 0] == 1.0
    light = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(light).rectangle((40, 20, 50, 80), fill=(255, 255, 255, 255))  # white strokes: on black
    grey = imaging.decode_image(encoded(light.convert(mode)))
    assert grey[50, 45] == 1.0 and grey[0, 0] == 0.0


def test_a_palette_with_a_transparent_colour_is_read_as_transparency():
    picture = Image.new("P", (60, 60), 0)
    picture.putpalette([128, 128, 128] + [0, 0, 0] + [255, 255, 255] * 254)  # 0: grey paper, 1: black, 2...: white
    ImageDraw.Draw(picture).rectangle((20, 10, 30, 50), fill=1)  # black strokes
    grey = imaging.decode_image(encoded(picture, transparency=0))
    assert grey[30, 25] == 0.0 and grey[0, 0] == 1.0  # the transparent grey paper is background (white), not grey
    ImageDraw.Draw(picture).rectangle((20, 10, 30, 50), fill=2)  # now white strokes
    grey = imaging.decode_image(encoded(picture, transparency=0))
    assert grey[30, 25] == 1.0 and grey[0, 0] == 0.0
    assert imaging.decode_image(encoded(picture))[0, 0] == pytest.approx(128 / 255)  # opaque: the paper is grey


@pytest.mark.parametrize("mode, paper", [("RGB", (255, 0, 0)), ("L", 77)])
def test_a_grey_or_rgb_png_with_a_transparent_colour_key_is_read_as_transparency(mode, paper):
    picture = Image.new(mode, (60, 60), paper)
    ImageDraw.Draw(picture).rectangle((20, 10, 30, 50), fill=(0, 0, 0) if mode == "RGB" else 0)
    grey = imaging.decode_image(encoded(picture, transparency=paper))
    assert grey[30, 25] == 0.0 and grey[0, 0] == 1.0  # the keyed paper is background, not a dark grey


def test_mid_grey_strokes_on_transparency_go_on_white_and_faint_white_ones_on_black():
    grey_strokes = Image.new("LA", (100, 100), (0, 0))
    ImageDraw.Draw(grey_strokes).rectangle((10, 10, 90, 90), fill=(100, 255))  # darker than half: on white
    assert imaging.decode_image(encoded(grey_strokes))[0, 0] == 1.0
    faint = Image.new("LA", (100, 100), (0, 0))
    faint.putpixel((50, 50), (255, 128))  # one white pixel, half opaque: a weight of 0.5, still white ink
    assert imaging.decode_image(encoded(faint))[0, 0] == 0.0


def test_fully_transparent_pictures_are_white_and_then_blank():
    grey = imaging.decode_image(encoded(Image.new("RGBA", (40, 30), (255, 255, 255, 0))))
    assert grey.shape == (30, 40) and np.all(grey == 1.0)
    with refused("^expected a picture of a digit, got a blank 40x30 image$"):
        imaging.grey_to_batch(grey)


def test_shrinking_averages_the_ink_not_the_colour_under_transparency():
    """Red ink hidden under alpha 0 must not darken the average of a shrunk transparent picture."""
    rgba = np.zeros((2048, 2048, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent
    rgba[1000:1100, 900:1000] = (255, 255, 255, 255)  # a white square, opaque
    grey = imaging.decode_image(encoded(Image.fromarray(rgba, "RGBA")))
    assert grey.shape == (1024, 1024)
    assert grey[0, 0] == 0.0 and grey[525, 475] == 1.0  # black around the white ink, nothing of the red


def test_the_border_is_the_outermost_pixels_once_each():
    assert imaging._border(np.arange(16).reshape(4, 4)).tolist() == [0, 1, 2, 3, 12, 13, 14, 15, 4, 8, 7, 11]
    assert imaging._border(np.arange(32).reshape(2, 4, 4)).shape == (2, 12)


def test_white_on_black_inverts_only_a_mostly_bright_border():
    image = np.zeros((5, 5), np.float32)
    image[0, :] = 1.0  # 5 bright of 16 border pixels: kept
    np.testing.assert_array_equal(imaging.white_on_black(image), image)
    image[:, 0] = 1.0
    image[-1, :3] = 1.0  # 5 + 4 + 2 = 11 of 16: inverted
    np.testing.assert_array_equal(imaging.white_on_black(image), 1.0 - image)
    half = np.zeros((4, 4), np.float32)
    half[:2] = 1.0  # 6 of 12 border pixels bright: exactly half is not "mostly"
    np.testing.assert_array_equal(imaging.white_on_black(half), half)
    grey = np.zeros((4, 4), np.float32)
    grey.flat[[0, 1, 2, 3, 4, 7, 8]] = 0.5  # 7 of 12 border pixels at 0.5, which is not bright
    grey[1, 1] = 1.0
    np.testing.assert_array_equal(imaging.white_on_black(grey), grey)
    both = np.stack([np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32)])
    np.testing.assert_array_equal(imaging.white_on_black(both), np.zeros((2, 4, 4)))  # each image on its own
    assert imaging.white_on_black(half.astype(np.float64)).dtype == np.float32


# --- MNIST form


def test_a_28x28_picture_is_taken_as_mnist_has_it(digits):
    for digit in digits[:3]:
        batch = imaging.image_to_batch(encoded(Image.fromarray(digit)))
        assert batch.shape == (1, 1, 28, 28) and batch.dtype == np.float32
        np.testing.assert_array_equal(batch[0, 0], digit / np.float32(255))
        inverted = imaging.image_to_batch(encoded(Image.fromarray(255 - digit)))
        np.testing.assert_allclose(inverted, batch, atol=1e-6)


def test_mnist_form_fits_the_digit_in_20_pixels_and_centres_it_by_mass():
    out = imaging.grey_to_batch(np.asarray(bar(500, 300), np.float32) / 255)
    assert out.shape == (1, 1, 28, 28) and out.dtype == np.float32
    image = out[0, 0]
    rows, cols = np.nonzero(image > imaging.INK_THRESHOLD)
    assert rows.max() - rows.min() + 1 == 20  # the tall side fills the box
    assert 9 <= cols.max() - cols.min() + 1 <= 11  # a 51x101 bar: 20 tall, so 10 wide
    ys, xs = np.indices(image.shape)
    assert abs((ys * image).sum() / image.sum() - 13.5) <= 0.5
    assert abs((xs * image).sum() / image.sum() - 13.5) <= 0.5
    assert image.min() == 0.0 and image.max() <= 1.0 and image.max() > 0.95


def test_a_digit_box_already_20_pixels_tall_is_taken_pixel_for_pixel():
    grey = np.ones((100, 100), np.float32)
    grey[10:30, 40:50] = 0.0  # a 10x20 box of ink on white: cut exactly, scale 1
    image = imaging.grey_to_batch(grey)[0, 0]
    assert image.sum() == pytest.approx(200.0, abs=1e-3)
    rows, cols = np.nonzero(image > 0.5)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 23, 9, 18)  # centred: 13.5 in either direction


def test_resampling_overshoot_is_clipped_to_1():
    """LANCZOS rings past 1 on fine strokes (1.17 for these stripes of period 9 in a 40-pixel box); MNIST never does."""
    stripes = np.zeros((40, 40), np.float32)
    for column in range(0, 40, 9):
        stripes[:, column : column + 4] = 1.0
    stripes[[0, -1], :] = stripes[:, [0, -1]] = 1.0
    grey = np.ones((100, 100), np.float32)
    grey[30:70, 30:70] = 1.0 - stripes  # black stripes on white paper
    image = imaging.grey_to_batch(grey)[0, 0]
    assert image.max() == 1.0 and image.min() == 0.0


def test_ink_is_what_lies_above_the_threshold():
    grey = np.zeros((100, 100), np.float32)
    grey[10:30, 40:50] = 1.0
    speck = grey.copy()
    speck[90, 90] = imaging.INK_THRESHOLD  # at the threshold, not above it: not part of the digit's box
    np.testing.assert_array_equal(imaging.grey_to_batch(speck), imaging.grey_to_batch(grey))
    speck[90, 90] = 0.25
    assert not np.array_equal(imaging.grey_to_batch(speck), imaging.grey_to_batch(grey))


def test_a_wide_digit_fills_the_box_across():
    grey = np.ones((100, 400), np.float32)
    grey[40:60, 20:380] = 0.0
    image = imaging.grey_to_batch(grey)[0, 0]
    rows, cols = np.nonzero(image > imaging.INK_THRESHOLD)
    assert cols.max() - cols.min() + 1 == 20 and rows.max() - rows.min() + 1 <= 2


def test_a_faint_digit_on_grey_paper_is_stretched_to_full_contrast():
    grey = np.full((200, 200), 0.6, np.float32)
    grey[50:150, 90:110] = 0.4  # a faint dark bar on grey paper
    sharp = np.ones((200, 200), np.float32)
    sharp[50:150, 90:110] = 0.0  # the same bar, black on white
    np.testing.assert_allclose(imaging.grey_to_batch(grey), imaging.grey_to_batch(sharp), atol=1e-5)


def test_a_picture_of_one_grey_is_blank():
    with refused("^expected a picture of a digit, got a blank 30x20 image$"):
        imaging.grey_to_batch(np.full((20, 30), 0.5, np.float32))


def test_a_box_wider_than_tall_is_cut_exactly_too():
    grey = np.ones((100, 100), np.float32)
    grey[10:20, 30:50] = 0.0  # 20 wide, 10 tall: the width sets the scale (1)
    image = imaging.grey_to_batch(grey)[0, 0]
    assert image.sum() == pytest.approx(200.0, abs=1e-3)
    rows, cols = np.nonzero(image > 0.5)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (9, 18, 4, 23)


def test_paper_darker_than_its_border_is_black_not_below_it():
    grey = np.full((100, 100), 0.3, np.float32)  # ink space: a grey field whose border sets the black level
    grey[10:90, 50:60] = grey[10:90, 70:80] = 1.0  # two strokes...
    level = imaging.grey_to_batch(grey)
    grey[30:70, 60:70] = 0.1  # ...with a patch darker than the field between them, inside the digit's box
    np.testing.assert_array_equal(imaging.grey_to_batch(grey), level)  # at or below the black level: black alike


def test_a_one_pixel_line_across_keeps_one_row():
    grey = np.ones((200, 200), np.float32)
    grey[100, 20:180] = 0.0
    image = imaging.grey_to_batch(grey)[0, 0]
    rows, cols = np.nonzero(image > 0.5)
    assert cols.max() - cols.min() + 1 == 20 and set(rows) == {14}


@pytest.mark.parametrize("extra", [0.0, 0.879, 3.0])
def test_the_centre_of_mass_lands_within_half_a_pixel_of_the_centre(extra):
    fitted = np.ones((20, 6), np.float32)
    fitted[-1] += extra  # heavier at the bottom: the centre of mass moves down (9.9 rows for 0.879)
    fitted[:, 0] += extra
    out = imaging._place_by_mass(fitted)
    ys, xs = np.indices(out.shape)
    assert abs((ys * out).sum() / out.sum() - 13.5) <= 0.5 and abs((xs * out).sum() / out.sum() - 13.5) <= 0.5


def test_a_one_pixel_line_keeps_one_column():
    grey = np.ones((200, 200), np.float32)
    grey[20:180, 100] = 0.0  # 160 tall, 1 wide: 20 tall and 0.125 wide when fitted, kept as 1 column
    image = imaging.grey_to_batch(grey)[0, 0]
    rows, cols = np.nonzero(image > 0.5)
    assert rows.max() - rows.min() + 1 == 20 and set(cols) == {14}  # 13.5 rounds to 14


def test_an_odd_box_is_placed_by_its_centre_of_mass_rounded_to_even():
    fitted = np.ones((19, 3), np.float32)  # centre (9, 1): 13.5 - 9 = 4.5 rounds to 4, 13.5 - 1 = 12.5 to 12
    out = imaging._place_by_mass(fitted)
    rows, cols = np.nonzero(out)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 22, 12, 14)


def test_strokes_exactly_half_bright_go_on_white():
    picture = Image.new("LA", (60, 60), (0, 0))
    ImageDraw.Draw(picture).rectangle((10, 10, 29, 50), fill=(255, 255))
    ImageDraw.Draw(picture).rectangle((30, 10, 49, 50), fill=(0, 255))  # as much black ink as white: brightness 0.5
    assert imaging.decode_image(encoded(picture))[0, 0] == 1.0


def test_a_digit_photographed_small_and_large_reads_the_same(digits):
    for digit in digits:
        paper = Image.new("L", (600, 600), 255)
        paper.paste(Image.fromarray(255 - digit).resize((300, 300), Image.Resampling.BILINEAR), (200, 50))
        photo = imaging.image_to_batch(encoded(paper))[0, 0]
        # MNIST's own digits are fitted in 20x20 and centred by mass, so the round trip comes close to the original.
        assert np.abs(photo - digit / 255).mean() < 0.15


def test_place_by_mass_keeps_a_digit_inside_the_image():
    fitted = np.zeros((20, 20), np.float32)
    fitted[:, -1] = 1.0  # all mass on the box's right edge: centring it would push the box out on the left
    out = imaging._place_by_mass(fitted)
    expected = np.zeros((28, 28), np.float32)
    expected[4:24, 19] = 1.0  # the box at the left edge (left 0), centred down (top 4)
    np.testing.assert_array_equal(out, expected)
    fitted = np.zeros((20, 20), np.float32)
    fitted[-1, :] = 1.0  # all mass on the bottom edge: the box at the top edge
    expected = np.zeros((28, 28), np.float32)
    expected[19, 4:24] = 1.0
    np.testing.assert_array_equal(imaging._place_by_mass(fitted), expected)
    fitted = np.zeros((20, 20), np.float32)
    fitted[0, 0] = 1.0  # all mass in the top-left corner: the box at the bottom right
    assert imaging._place_by_mass(fitted)[8, 8] == 1.0
    assert np.all(imaging._place_by_mass(np.zeros((20, 4), np.float32)) == 0)  # no mass: centred by its box


def test_picture_to_batch_takes_images_bytes_paths_and_pixels(tmp_path, digits):
    digit = digits[0]
    expected = digit[None, None] / np.float32(255)
    path = tmp_path / "digit.png"
    path.write_bytes(encoded(Image.fromarray(digit)))
    for picture in (Image.fromarray(digit), path.read_bytes(), bytearray(path.read_bytes()), path, str(path),
                    digit, digit.tolist(), digit / 255.0):
        np.testing.assert_allclose(imaging.picture_to_batch(picture), expected, atol=1e-6, err_msg=type(picture))
    with refused("^expected an image of at most 10 pixels, got 28x28 = 784$"):
        imaging.picture_to_batch(path, max_pixels=10)
    with refused("^expected an image of at most 10 pixels"):
        imaging.picture_to_batch(path.read_bytes(), max_pixels=10)


# --- pixels_to_batch and numeric_array


@pytest.mark.parametrize("shape, batched", [((28, 28), False), ((784,), False), ((3, 28, 28), True),
                                            ((3, 784), True), ((3, 1, 28, 28), True), ((1, 784), True)])
def test_pixel_shapes_that_are_taken(digits, shape, batched):
    count = shape[0] if batched else 1
    pixels = digits[:count].reshape(shape)
    batch, came_batched = imaging.pixels_to_batch(pixels.tolist())
    assert came_batched is batched and batch.shape == (count, 1, 28, 28) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, digits[:count, None] / 255, atol=1e-6)


@pytest.mark.parametrize("shape", [(27, 28), (785,), (2, 2, 28, 28), (2, 28), (28, 28, 1), (1, 1, 1, 784)])
def test_pixel_shapes_that_are_refused(shape):
    with refused(r"^expected pixels as one image \(28x28 or 784 values\) or a batch \(\[N, 28, 28\], \[N, 784\] or "
                 rf"\[N, 1, 28, 28\]\), got shape \[{', '.join(map(str, shape))}\]$"):
        imaging.pixels_to_batch(np.zeros(shape).tolist())


def test_pixel_scales_and_polarity():
    one = np.zeros(784)
    one[300:310] = 1.0
    scaled = imaging.pixels_to_batch(one.tolist())[0]
    assert scaled.max() == 1.0 and scaled.sum() == 10.0
    assert np.array_equal(imaging.pixels_to_batch((one * 255).tolist())[0], scaled)  # 0-255 when any value is over 1
    assert np.array_equal(imaging.pixels_to_batch((255 - one * 255).tolist())[0], scaled)  # black on white inverted
    assert imaging.pixels_to_batch([255.0] + [0.0] * 783)[0].max() == 1.0
    assert imaging.pixels_to_batch([1.0] + [0.0] * 783)[0].max() == 1.0  # 1 is the top of the 0-1 scale, not 1/255
    assert imaging.pixels_to_batch([2.0] + [0.0] * 783)[0].max() == np.float32(2 / 255)  # over 1: the 0-255 scale
    assert imaging.pixels_to_batch([0.0] * 784)[0].max() == 0.0
    assert imaging.pixels_to_batch([0.5] + [0.0] * 783)[0].max() == 0.5  # under 1: the 0-1 scale, as it came
    lifted = imaging.pixels_to_batch([1.0] * 783 + [200.0])[0]  # nothing at 0 is still in range
    assert lifted.min() == np.float32(1 / 255) and lifted.max() == np.float32(200 / 255)
    for low, high in ((-1, 0), (0, 256), (-0.5, 300)):
        with refused(f"^expected pixel values in 0-255 or 0-1, got values from {low:g} to {high:g}$"):
            imaging.pixels_to_batch([float(low), float(high)] + [0.0] * 782)


def test_a_long_string_among_numbers_costs_no_more_than_the_numbers():
    """numpy's own dtype for these would be 100,000 characters a value: 400 MB from a 100 KB body."""
    import tracemalloc

    tracemalloc.start()
    try:
        with refused("got strings$"):
            imaging.numeric_array([1] * 1000 + ["x" * 100_000], "x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000, peak


def test_numeric_array_reads_nested_numbers_as_float32():
    array = imaging.numeric_array([[1, 2.5], [3, 4]], "x")
    assert array.dtype == np.float32 and array.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    assert imaging.numeric_array(7, "x").shape == ()
    assert imaging.numeric_array([[[0]]], "x").shape == (1, 1, 1)
    assert imaging.numeric_array([1, 2**70], "x").tolist() == [1.0, float(np.float32(2**70))]


@pytest.mark.parametrize("values, message", [
    ([True, 1], "^expected x as numbers, got booleans$"),
    ([[False]], "^expected x as numbers, got booleans$"),
    (["7"], "^expected x as numbers, got strings$"),
    ([[1, 2], [3]], r"^expected x as a rectangular array of numbers, got ragged nested lists$"),
    ([1, "x"], r"^expected x as a rectangular array of numbers, got strings$"),
    ([[1, 2], [3, "x"]], r"^expected x as a rectangular array of numbers, got strings$"),
    ([True, False], "^expected x as numbers, got booleans$"),
    ([[1], 2], r"^expected x as a rectangular array of numbers, got ragged nested lists$"),
    ([1, None], r"^expected finite x, got NaN or infinity \(or a number too large for float32\)$"),
    ([1, {"a": 1}], r"^expected x as a rectangular array of numbers, got values that are not all numbers$"),
    ([1, 10**400], r"^expected x as a rectangular array of numbers, got values that are not all numbers$"),
    ([], r"^expected x with at least one value, got an empty array of shape \[0\]$"),
    ([[], []], r"^expected x with at least one value, got an empty array of shape \[2, 0\]$"),
    ([1, float("nan")], r"^expected finite x, got NaN or infinity \(or a number too large for float32\)$"),
    ([1, float("-inf")], r"^expected finite x, got NaN or infinity"),
    ([1, 1e39], r"^expected finite x, got NaN or infinity \(or a number too large for float32\)$"),
])
def test_numeric_array_refuses_what_is_not_finite_numbers(values, message):
    with refused(message):
        imaging.numeric_array(values, "x")


def test_the_digits_are_mnists_own(digits, data_dir):
    """Last in the file: zoo.core.data loads and fingerprints all of MNIST (some 4 s)."""
    images, _ = mnist_test_images(data_dir, 10)
    np.testing.assert_array_equal(digits, (images[:, 0].numpy() * 255).round().astype(np.uint8))
