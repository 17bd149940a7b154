"""What one picture costs the server: time and peak memory of reading a 4096x4096 PNG of every mode, a 12-megapixel
JPEG and a 28x28 digit into the model's input, each in a fresh process, beside the same pictures read the way the
server read them before this change (every pixel converted to float32, transparency composited in float), in the
same run.

    python benchmarks/picture_cost.py
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

MEASURE = """
import resource, sys, time
import numpy as np
from PIL import Image
from zoo.inputs import imaging

def before(data):  # the server's reader before pictures were shrunk first
    image = Image.open(__import__("io").BytesIO(data), formats=imaging.IMAGE_FORMATS)
    image.load()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        weight = float(alpha.sum())
        ink = float((grey * alpha).sum() / weight) if weight else 0.0
        grey = grey * alpha + (0.0 if ink > 0.5 else 1.0) * (1.0 - alpha)
    else:
        grey = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.float32) / np.float32(255)
    return imaging.grey_to_batch(grey)

read = before if sys.argv[1] == "before" else imaging.image_to_batch
data = open(sys.argv[2], "rb").read()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
batch = read(data)
seconds = time.perf_counter() - started
print(seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, float(batch.sum()))
"""


def ring(side: int, mode: str) -> Image.Image:
    """A digit-like ring drawn on transparency, as a drawing app saves it, converted to `mode`."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((side // 4, side // 6, 3 * side // 4, 5 * side // 6), outline=(255, 255, 255, 255),
                                  width=max(1, side // 20))
    if mode in ("RGBA", "P"):
        return image
    return Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image).convert(mode)


def encoded(image: Image.Image, fmt: str, mode: str) -> bytes:
    buffer = io.BytesIO()
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        image.save(buffer, fmt, transparency=image.getpixel((0, 0)))
    else:
        image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def main() -> None:
    pictures = {f"4096x4096 PNG {mode}": encoded(ring(4096, mode), "PNG", mode)
                for mode in ("P", "RGBA", "LA", "RGB", "L", "1")}
    pictures["4032x3024 JPEG (12 MP photo)"] = encoded(ring(4032, "RGB").resize((4032, 3024)), "JPEG", "RGB")
    pictures["28x28 PNG L"] = encoded(ring(28, "L"), "PNG", "L")
    print("| picture | file | before: s | before: +MB | now: s | now: +MB | time ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        for label, data in pictures.items():
            path = Path(scratch) / "picture"
            path.write_bytes(data)
            figures = {}
            for way in ("before", "now"):
                runs = [subprocess.run([sys.executable, "-c", MEASURE, way, str(path)], capture_output=True, text=True,
                                       check=True).stdout.split() for _ in range(3)]
                figures[way] = (min(float(run[0]) for run in runs), max(float(run[1]) for run in runs))
            (bt, bm), (nt, nm) = figures["before"], figures["now"]
            print(f"| {label} | {len(data) / 1024:,.0f} KB | {bt:.3f} | {bm:,.0f} | {nt:.3f} | {nm:,.0f} | "
                  f"{bt / nt:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
