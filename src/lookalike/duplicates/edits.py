"""Edited copies of an image, made in memory: what people do to photos they re-save."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

Edit = Callable[[Image.Image, random.Random], Image.Image]


def crop(im: Image.Image, rng: random.Random) -> Image.Image:
    """Keep 30-80% of the surface, off centre."""
    w, h = im.size
    area = rng.uniform(0.3, 0.8)
    aspect = rng.uniform(0.8, 1.25)
    fw, fh = min(1.0, (area * aspect) ** 0.5), min(1.0, (area / aspect) ** 0.5)
    cw, ch = max(1, round(w * fw)), max(1, round(h * fh))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((left, top, left + cw, top + ch))


def resize(im: Image.Image, rng: random.Random) -> Image.Image:
    """Down to 20-50% of each side."""
    f = rng.uniform(0.2, 0.5)
    w, h = im.size
    return im.resize((max(16, round(w * f)), max(16, round(h * f))), Image.Resampling.BILINEAR)


def jpeg(im: Image.Image, rng: random.Random) -> Image.Image:
    """Re-saved as a low-quality JPEG (quality 10-40)."""
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=rng.randint(10, 40))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def colour(im: Image.Image, rng: random.Random) -> Image.Image:
    """Brightness, contrast and saturation each changed by up to 30%, or grey."""
    if rng.random() < 0.3:
        return ImageOps.grayscale(im).convert("RGB")
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.7, 1.3))
    return ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4))


def flip(im: Image.Image, rng: random.Random) -> Image.Image:
    """Mirrored left to right."""
    return ImageOps.mirror(im)


def rotate(im: Image.Image, rng: random.Random) -> Image.Image:
    """Turned by 3-10 degrees either way, corners cropped away."""
    angle = rng.choice((-1, 1)) * rng.uniform(3, 10)
    w, h = im.size
    out = im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)
    m = 0.1  # the black corners of a 10 degree turn stay within ~10% of each side
    return out.crop((round(w * m), round(h * m), round(w * (1 - m)), round(h * (1 - m))))


def text(im: Image.Image, rng: random.Random) -> Image.Image:
    """A caption across the lower part, white with a dark outline."""
    out = im.copy()
    w, h = out.size
    size = max(10, h // 10)
    try:
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    caption = rng.choice(("holiday 2024", "(c) lookalike", "best day ever", "IMG_0042"))
    draw = ImageDraw.Draw(out)
    x, y = rng.randint(0, max(0, w // 4)), rng.randint(h // 2, max(h // 2, h - size - 2))
    draw.text(
        (x, y), caption, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0)
    )
    return out


#: Every edit calibration applies, by name.
EDITS: dict[str, Edit] = {
    "crop": crop,
    "resize": resize,
    "jpeg": jpeg,
    "colour": colour,
    "flip": flip,
    "rotate": rotate,
    "text": text,
}


#: Two edits in a row: copies as far from the image as two copies of one photo are from
#: each other (a crop of one export against a rotated other one). Calibration uses them
#: to tell the collection's own copies from distinct images, not to measure recall.
COMPOUND: tuple[tuple[str, str], ...] = (
    ("crop", "rotate"),
    ("crop", "text"),
    ("resize", "jpeg"),
    ("colour", "text"),
    ("flip", "crop"),
)


def edited_copies(im: Image.Image, rng: random.Random) -> list[tuple[str, Image.Image]]:
    """One copy of ``im`` per edit in :data:`EDITS`, as ``(name, image)``."""
    im = im.convert("RGB")
    return [(name, edit(im, rng)) for name, edit in EDITS.items()]


def compound_copies(im: Image.Image, rng: random.Random) -> list[tuple[str, Image.Image]]:
    """One copy of ``im`` per pair of edits in :data:`COMPOUND`, named ``"first+second"``."""
    im = im.convert("RGB")
    return [(f"{a}+{b}", EDITS[b](EDITS[a](im, rng), rng)) for a, b in COMPOUND]
