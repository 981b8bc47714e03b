"""The project's own test images: a coloured shape on a white background, at several aspect ratios.

Drawn with numpy from integer geometry only (no fonts, no anti-aliasing), so the same source
always yields the same pixels and PNG bytes. The tiny multimodal model is trained to describe
them (colour, shape, and whether the picture is wide, tall or square) and the image oracle
runs its built-in set (`BUILTIN_IMAGES`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 70, 220),
    "yellow": (240, 210, 20),
    "purple": (140, 40, 170),
    "orange": (250, 130, 20),
}
SHAPES = ("square", "circle", "triangle")
# (width, height) of the source pictures: the processor resizes each keeping its aspect ratio.
ASPECTS = {"square": (240, 240), "wide": (360, 180), "tall": (180, 360), "wide43": (320, 240), "tall34": (240, 320)}
BACKGROUND = (255, 255, 255)


def orientation(width: int, height: int) -> str:
    """What the answer says about the frame: wide, tall or square (within 10%)."""
    if width > 1.1 * height:
        return "wide"
    if height > 1.1 * width:
        return "tall"
    return "square"


@dataclass(frozen=True)
class ImageCase:
    """One picture: what it shows and how it is drawn (jitter moves and resizes the shape)."""

    name: str
    colour: str
    shape: str
    aspect: str
    jitter: int = 0

    @property
    def size(self) -> tuple[int, int]:
        return ASPECTS[self.aspect]

    def answer(self) -> str:
        w, h = self.size
        return (f"{self.colour.capitalize()} {self.shape}. The image shows a {self.colour} {self.shape} on a white "
                f"background, and the picture is {orientation(w, h)}.")

    def pixels(self) -> np.ndarray:
        return draw(self.colour, self.shape, self.size, self.jitter)

    def png(self) -> bytes:
        return png_bytes(self.pixels())


def draw(colour: str, shape: str, size: tuple[int, int], jitter: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: the shape, about half the short side, near the centre (moved by `jitter`)."""
    width, height = size
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BACKGROUND
    rng = np.random.default_rng(jitter)
    short = min(width, height)
    half = int(short * rng.uniform(0.22, 0.32)) if jitter else short // 4
    cx = width // 2 + (int(rng.integers(-width // 8, width // 8 + 1)) if jitter else 0)
    cy = height // 2 + (int(rng.integers(-height // 8, height // 8 + 1)) if jitter else 0)
    ys, xs = np.mgrid[0:height, 0:width]
    if shape == "square":
        mask = (abs(xs - cx) <= half) & (abs(ys - cy) <= half)
    elif shape == "circle":
        mask = (xs - cx) ** 2 + (ys - cy) ** 2 <= half * half
    elif shape == "triangle":  # apex up: rows widen from the top vertex to the base
        top, bottom = cy - half, cy + half
        spread = (ys - top) * half / max(1, bottom - top)
        mask = (ys >= top) & (ys <= bottom) & (abs(xs - cx) <= spread)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    img[mask] = COLOURS[colour]
    return img


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# The oracle's built-in images: every aspect ratio, every shape, six colours; unjittered.
BUILTIN_IMAGES = (
    ImageCase("red-circle-square", "red", "circle", "square"),
    ImageCase("blue-square-wide", "blue", "square", "wide"),
    ImageCase("green-triangle-tall", "green", "triangle", "tall"),
    ImageCase("yellow-circle-wide43", "yellow", "circle", "wide43"),
    ImageCase("purple-square-tall34", "purple", "square", "tall34"),
    ImageCase("orange-triangle-square", "orange", "triangle", "square"),
    ImageCase("green-circle-wide", "green", "circle", "wide"),
    ImageCase("red-square-tall", "red", "square", "tall"),
)


def training_cases(variants: int = 3) -> list[ImageCase]:
    """Every colour x shape x aspect, `variants` jittered copies each (jitter seeds 1..variants)."""
    return [ImageCase(f"{c}-{s}-{a}-{j}", c, s, a, j)
            for c in COLOURS for s in SHAPES for a in ASPECTS for j in range(1, variants + 1)]
