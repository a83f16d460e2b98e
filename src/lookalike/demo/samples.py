"""Real photos that ship inside installed packages, and edited copies of them.

scikit-image, scikit-learn and matplotlib wheels carry a few dozen sample photos (a cat, a
coffee cup, an astronaut, a palace, a flower, Grace Hopper...). They are the photos of
``lookalike demo`` and of the quality tests and benchmarks: real content, no download.

:func:`copy_detection_set` builds a Copydays-style copy-detection set from them: each
original gets edited copies (crops of 10-80 % of the surface, JPEG quality 3-75,
rotations, flips, grey, blur, colour shifts, a text overlay, resizes, and the photo pasted
into another one), with the original each copy came from as ground truth.
"""

from __future__ import annotations

import importlib.util
import io
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

# (name, package, folder inside the package, file). Real camera photos only: synthetic
# test patterns, logos and line drawings are left out.
_PHOTOS: tuple[tuple[str, str, str, str], ...] = (
    ("astronaut", "skimage", "data", "astronaut.png"),
    ("brick", "skimage", "data", "brick.png"),
    ("camera", "skimage", "data", "camera.png"),
    ("cell", "skimage", "data", "cell.png"),
    ("chelsea", "skimage", "data", "chelsea.png"),
    ("clock_motion", "skimage", "data", "clock_motion.png"),
    ("coffee", "skimage", "data", "coffee.png"),
    ("coins", "skimage", "data", "coins.png"),
    ("grass", "skimage", "data", "grass.png"),
    ("gravel", "skimage", "data", "gravel.png"),
    ("hubble_deep_field", "skimage", "data", "hubble_deep_field.jpg"),
    ("ihc", "skimage", "data", "ihc.png"),
    ("moon", "skimage", "data", "moon.png"),
    ("motorcycle_left", "skimage", "data", "motorcycle_left.png"),
    ("motorcycle_right", "skimage", "data", "motorcycle_right.png"),
    ("page", "skimage", "data", "page.png"),
    ("retina", "skimage", "data", "retina.jpg"),
    ("rocket", "skimage", "data", "rocket.jpg"),
    ("text", "skimage", "data", "text.png"),
    ("china", "sklearn", "datasets/images", "china.jpg"),
    ("flower", "sklearn", "datasets/images", "flower.jpg"),
    ("grace_hopper", "matplotlib", "mpl-data/sample_data", "grace_hopper.jpg"),
)
# The two motorcycle photos are a stereo pair (the same scene a few cm apart): near
# duplicates of each other, so a copy-detection set keeps only one as an original.
TWINS = {"motorcycle_right": "motorcycle_left"}
PACKAGES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


@dataclass(frozen=True)
class SamplePhoto:
    """One installed sample photo.

    Attributes:
        name: a short name (``"chelsea"``).
        package: the distribution it ships in (``"scikit-image"``).
        path: the file inside the installed package.
    """

    name: str
    package: str
    path: Path

    def load(self) -> Image.Image:
        """The photo as an RGB Pillow image (grey photos become three equal channels)."""
        with Image.open(self.path) as im:
            return im.convert("RGB")


def sample_photos(names: Iterable[str] | None = None) -> list[SamplePhoto]:
    """The sample photos installed here, in a fixed order.

    Args:
        names: only these (in this order); ``None`` for all that are installed.

    Returns:
        The photos whose package is installed; an empty list if none is.
    """
    roots: dict[str, Path | None] = {}
    found: dict[str, SamplePhoto] = {}
    for name, module, folder, file in _PHOTOS:
        if module not in roots:
            roots[module] = _package_root(module)
        root = roots[module]
        if root is not None and (root / folder / file).is_file():
            found[name] = SamplePhoto(name, PACKAGES[module], root / folder / file)
    if names is None:
        return list(found.values())
    return [found[n] for n in names if n in found]


def missing_packages() -> list[str]:
    """The distributions of sample photos that are not installed (e.g. ``scikit-image``)."""
    return [PACKAGES[m] for m in dict.fromkeys(p[1] for p in _PHOTOS) if _package_root(m) is None]


def _package_root(module: str) -> Path | None:
    # find_spec locates the package without importing it (importing skimage costs ~1 s).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def load_photos(photos: Sequence[SamplePhoto]) -> dict[str, np.ndarray]:
    """Decode photos to arrays.

    Returns:
        name -> (H, W, 3) uint8 RGB array.
    """
    return {p.name: np.asarray(p.load()) for p in photos}


# ------------------------------------------------------------------------------ edits

Edit = Callable[[Image.Image, random.Random, Image.Image], Image.Image]


def _crop(fraction: float) -> Edit:
    """Keep a random box holding ``1 - fraction`` of the surface (Copydays' crops)."""

    def edit(im: Image.Image, rng: random.Random, _other: Image.Image) -> Image.Image:
        w, h = im.size
        keep = (1.0 - fraction) ** 0.5
        cw, ch = max(8, round(w * keep)), max(8, round(h * keep))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return im.crop((x, y, x + cw, y + ch))

    return edit


def _jpeg(quality: int) -> Edit:
    def edit(im: Image.Image, _rng: random.Random, _other: Image.Image) -> Image.Image:
        return jpeg_roundtrip(im, quality)

    return edit


def jpeg_roundtrip(im: Image.Image, quality: int) -> Image.Image:
    """``im`` saved as a JPEG of this quality and decoded again."""
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _rotate(degrees: float) -> Edit:
    def edit(im: Image.Image, _rng: random.Random, _other: Image.Image) -> Image.Image:
        return im.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")

    return edit


def _resize(scale: float) -> Edit:
    def edit(im: Image.Image, _rng: random.Random, _other: Image.Image) -> Image.Image:
        w, h = im.size
        return im.resize(
            (max(8, round(w * scale)), max(8, round(h * scale))), Image.Resampling.BICUBIC
        )

    return edit


def _colour(im: Image.Image, rng: random.Random, _other: Image.Image) -> Image.Image:
    im = ImageEnhance.Color(im).enhance(rng.uniform(1.4, 1.8))
    im = ImageEnhance.Brightness(im).enhance(rng.choice([0.7, 1.3]))
    r, g, b = im.split()
    return Image.merge("RGB", (b, g, r)) if rng.random() < 0.5 else Image.merge("RGB", (g, b, r))


def _text(im: Image.Image, rng: random.Random, _other: Image.Image) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    size = max(12, h // 8)
    for i, words in enumerate(("COPYRIGHT 2024", "lookalike sample", "DO NOT REPOST")):
        y = round(h * (0.15 + 0.3 * i)) + rng.randint(-5, 5)
        draw.text(
            (w // 12, y),
            words,
            fill=(255, 255, 0),
            font_size=size,
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )
    return out


def _paste(im: Image.Image, rng: random.Random, other: Image.Image) -> Image.Image:
    """The photo shrunk to half the width of another photo and pasted into it."""
    bg = other.copy()
    bw, bh = bg.size
    w, h = im.size
    scale = min(bw * 0.5 / w, bh * 0.6 / h)
    small = im.resize((max(8, round(w * scale)), max(8, round(h * scale))))
    x, y = rng.randint(0, bw - small.width), rng.randint(0, bh - small.height)
    bg.paste(small, (x, y))
    return bg


EDITS: dict[str, Edit] = {
    "crop10": _crop(0.1),
    "crop30": _crop(0.3),
    "crop50": _crop(0.5),
    "crop80": _crop(0.8),
    "jpeg75": _jpeg(75),
    "jpeg20": _jpeg(20),
    "jpeg8": _jpeg(8),
    "jpeg3": _jpeg(3),
    "rotate10": _rotate(10),
    "rotate90": _rotate(90),
    "hflip": lambda im, _r, _o: ImageOps.mirror(im),
    "vflip": lambda im, _r, _o: ImageOps.flip(im),
    "grey": lambda im, _r, _o: ImageOps.grayscale(im).convert("RGB"),
    "blur": lambda im, _r, _o: im.filter(ImageFilter.GaussianBlur(max(2.0, min(im.size) / 100))),
    "colour": _colour,
    "text": _text,
    "resize25": _resize(0.25),
    "resize200": _resize(2.0),
    "paste": _paste,
}
"""Every edit of the copy-detection set, by name: ``edit(image, rng, another_photo)``."""

# The demo's copies: the edits a photo library really collects (not the extreme ones).
DEMO_EDITS = ("crop30", "hflip", "colour", "jpeg20", "grey", "resize25")
# Originals larger than this are shrunk first: keeps the set fast to build and embed.
MAX_SIDE = 1024


@dataclass(frozen=True)
class EditedCopy:
    """One edited copy of a sample photo.

    Attributes:
        name: a file stem, ``"<original>__<edit>"``.
        original: the name of the photo it was made from.
        edit: the name of the edit (a key of :data:`EDITS`).
        image: the edited RGB image.
    """

    name: str
    original: str
    edit: str
    image: Image.Image


def load_originals(
    names: Iterable[str] | None = None, *, twins: bool = False
) -> dict[str, Image.Image]:
    """The sample photos as RGB images, at most :data:`MAX_SIDE` pixels on a side.

    Args:
        names: only these; ``None`` for all installed.
        twins: keep both photos of a near-duplicate pair (:data:`TWINS`).

    Returns:
        name -> RGB image, in a fixed order.
    """
    out = {}
    for photo in sample_photos(names):
        if not twins and photo.name in TWINS:
            continue
        im = photo.load()
        if max(im.size) > MAX_SIDE:
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        out[photo.name] = im
    return out


def edited_copies(
    originals: dict[str, Image.Image], edits: Sequence[str] = tuple(EDITS), *, seed: int = 0
) -> list[EditedCopy]:
    """Every edit of every original, reproducibly.

    Args:
        originals: name -> RGB image, e.g. from :func:`load_originals`.
        edits: names of :data:`EDITS` to apply.
        seed: changes the random parts (crop boxes, colours, paste positions).

    Returns:
        One copy per (original, edit), originals in order. ``paste`` puts the photo into
        the next original of the list (another photo, never itself).

    Raises:
        KeyError: an unknown edit name.
    """
    names = list(originals)
    out = []
    for i, name in enumerate(names):
        other = originals[names[(i + 1) % len(names)]] if len(names) > 1 else originals[name]
        for edit in edits:
            rng = random.Random(f"{seed}:{name}:{edit}")
            image = EDITS[edit](originals[name], rng, other).convert("RGB")
            out.append(EditedCopy(f"{name}__{edit}", name, edit, image))
    return out


def copy_detection_set(
    *, edits: Sequence[str] = tuple(EDITS), seed: int = 0, names: Iterable[str] | None = None
) -> tuple[dict[str, Image.Image], list[EditedCopy]]:
    """A Copydays-style copy-detection set from the installed sample photos.

    Args:
        edits: names of :data:`EDITS` (default: all 19).
        seed: for the random parts of the edits.
        names: only these originals.

    Returns:
        (originals: name -> RGB image, copies with their original's name). With every
        package installed: 21 originals (one of the stereo pair) and 21 x 19 copies.

    Example:
        >>> originals, copies = copy_detection_set(edits=("crop50", "jpeg3"))
        >>> copies[0].name, copies[0].original
        ('astronaut__crop50', 'astronaut')
    """
    originals = load_originals(names)
    return originals, edited_copies(originals, edits, seed=seed)


def write_images(
    folder: str | Path, images: dict[str, Image.Image], *, fmt: str = "png", quality: int = 92
) -> dict[str, Path]:
    """Write images as ``<folder>/<name>.<fmt>`` (PNG keeps an edit's pixels exactly).

    Returns:
        name -> the file written.
    """
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, im in images.items():
        path = root / f"{name}.{fmt}"
        if fmt in ("jpg", "jpeg"):
            im.save(path, quality=quality)
        else:
            im.save(path)
        out[name] = path
    return out
