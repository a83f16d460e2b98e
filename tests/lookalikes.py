"""Look-alike sets and copy sets for the duplicate search (#19), generated, no download.

Shared by the tests and ``bench/bench_duplicates.py`` (``from lookalikes import ...``;
pytest puts ``tests/`` on ``sys.path``, the bench script adds it). Each set is a
:class:`LabelledSet`: images by file stem, and for each the name of the capture it
shows. Two files are copies exactly when their labels are equal; everything else is a
distinct image, however alike.

Look-alike sets, distinct images that a global CNN vector puts very close together, each
with a few real copies among them (so that copies must still be found):

* :func:`letters` - letters in one layout: the same letterhead, different body text,
  scanned (paper tone, a slight turn and shift, noise);
* :func:`tiles` - non-overlapping tiles of one texture (scikit-image's brick, gravel and
  moon surface, and a generated wood grain; not its grass, which repeats patches of
  itself: two of its tiles share pixels);
* :func:`product_shots` - different objects (cut-outs of the sample photos) shot close on
  one wooden table, the camera moving a little between shots.

Copy set: :func:`copy_set` - Copydays-style edited copies of the sample photos (crop,
turn, JPEG quality, colour, text overlay, resize, mirror, and two edits in a row). Its
edits are ``lookalike.demo.samples``'s and this module's, not the calibration's own
(:mod:`lookalike.duplicates.edits`), so calibration is measured on copies it never made.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

FONTS = Path("/usr/share/fonts/truetype/dejavu")
_WORDS = [
    "account",
    "agreement",
    "annual",
    "balance",
    "board",
    "budget",
    "client",
    "committee",
    "contract",
    "delivery",
    "department",
    "estimate",
    "invoice",
    "meeting",
    "office",
    "order",
    "payment",
    "period",
    "project",
    "proposal",
    "quarter",
    "receipt",
    "report",
    "request",
    "review",
    "schedule",
    "service",
    "shipment",
    "statement",
    "supplier",
    "the",
    "a",
    "of",
    "to",
    "and",
    "for",
    "with",
    "on",
    "at",
    "by",
    "from",
    "we",
    "our",
    "your",
    "this",
    "that",
    "will",
    "be",
    "is",
    "are",
    "have",
    "please",
    "kindly",
    "regarding",
    "attached",
    "following",
    "previous",
    "next",
    "further",
    "thank",
    "sincerely",
]


@dataclass
class LabelledSet:
    """Images of one set.

    Attributes:
        name: the set's name (``"letters"``).
        images: file stem -> RGB image.
        labels: file stem -> the capture it shows (equal labels: copies).
    """

    name: str
    images: dict[str, Image.Image] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def add(self, stem: str, image: Image.Image, label: str | None = None) -> None:
        self.images[stem] = image.convert("RGB")
        self.labels[stem] = label or stem

    def true_pairs(self) -> set[frozenset[str]]:
        """Unordered pairs of stems that are copies of each other."""
        by: dict[str, list[str]] = {}
        for stem, label in self.labels.items():
            by.setdefault(label, []).append(stem)
        return {frozenset((a, b)) for g in by.values() for i, a in enumerate(g) for b in g[i + 1 :]}

    def write(self, folder: str | Path, quality: int = 90) -> dict[str, Path]:
        """Every image as ``<folder>/<stem>.jpg``; returns stem -> path."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        out = {}
        for stem, im in self.images.items():
            out[stem] = root / f"{stem}.jpg"
            im.save(out[stem], quality=quality)
        return out


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def _rescan_and_shrink(
    out: LabelledSet, stem: str, page: Image.Image, rng: random.Random,
    size: tuple[int, int], resample: Image.Resampling,
) -> None:  # fmt: skip
    """Two copies of ``out``'s page ``stem``: ``page`` scanned again, and the scan shrunk
    to ``size`` and re-saved as JPEG 40."""
    out.add(f"{stem}_rescan", _scan(page, rng), stem)
    small = out.images[stem].resize(size, resample)
    out.add(f"{stem}_q40", _jpeg(small, 40), stem)


def _scan(page: Image.Image, rng: random.Random) -> Image.Image:
    """A page as a scanner sees it: paper tone, a slight turn and shift, noise."""
    angle = rng.uniform(-1.2, 1.2)
    out = page.rotate(angle, Image.Resampling.BICUBIC, fillcolor=(250, 250, 250))
    dx, dy = rng.randint(-8, 8), rng.randint(-8, 8)
    out = out.transform(out.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy),
                        fillcolor=(250, 250, 250))  # fmt: skip
    arr = np.asarray(out, dtype=np.float32) * rng.uniform(0.93, 0.99)
    arr += np.random.default_rng(rng.randrange(1 << 30)).normal(0, 3.0, arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _letter(rng: random.Random, size: tuple[int, int] = (620, 877)) -> Image.Image:
    """One letter of the shared layout: the letterhead is fixed, the rest drawn by rng."""
    w, h = size
    page = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(page)
    # The letterhead: the same on every letter.
    d.rectangle((40, 36, 104, 100), fill=(20, 70, 150))
    d.ellipse((52, 48, 92, 88), fill=(255, 255, 255))
    d.text(
        (120, 38), "NORTHWIND TRADING", font=_font("DejaVuSans-Bold.ttf", 30), fill=(20, 70, 150)
    )
    small = _font("DejaVuSans.ttf", 12)
    d.text((120, 76), "12 Harbour Road  -  Port Ellen  -  +44 1496 300 200", font=small,
           fill=(90, 90, 90))  # fmt: skip
    d.line((40, 116, w - 40, 116), fill=(20, 70, 150), width=3)
    d.text((40, h - 50), "Registered in Scotland No. 123456  -  www.northwind.example",
           font=small, fill=(120, 120, 120))  # fmt: skip
    # What differs: date, recipient, body, signature.
    body = _font("DejaVuSerif.ttf", 15)
    y = 140
    d.text((w - 200, y), f"{rng.randint(1, 28)} {rng.choice(['March', 'May', 'June'])} 2024",
           font=body, fill=(0, 0, 0))  # fmt: skip
    for _ in range(3):
        y += 22
        d.text((40, y), " ".join(rng.choice(_WORDS).title() for _ in range(rng.randint(2, 4))),
               font=body, fill=(0, 0, 0))  # fmt: skip
    y += 44
    d.text((40, y), f"Dear {rng.choice(['Mr', 'Ms', 'Dr'])} {rng.choice(_WORDS).title()},",
           font=body, fill=(0, 0, 0))  # fmt: skip
    y += 34
    while y < h - 190:
        for _ in range(rng.randint(3, 7)):
            line = ""
            while True:
                word = rng.choice(_WORDS)
                if d.textlength(line + " " + word, font=body) > w - 80:
                    break
                line = (line + " " + word).strip()
            d.text((40, y), line, font=body, fill=(0, 0, 0))
            y += 21
            if y >= h - 190:
                break
        y += 14
    d.text((40, h - 170), "Yours sincerely,", font=body, fill=(0, 0, 0))
    x, yy = 40, h - 130
    pts = [(x + i * 6, yy + rng.randint(-12, 12)) for i in range(rng.randint(14, 24))]
    d.line(pts, fill=(10, 20, 110), width=2)
    d.text((40, h - 100), rng.choice(_WORDS).title() + " " + rng.choice(_WORDS).title(),
           font=body, fill=(0, 0, 0))  # fmt: skip
    return page


def letters(n: int = 30, copies: int = 3, seed: int = 0) -> LabelledSet:
    """``n`` different scanned letters in one layout; ``copies`` of them scanned twice
    more (a second scan, and a smaller JPEG re-save of the first)."""
    out = LabelledSet("letters")
    for k in range(n):
        page = _letter(random.Random(f"{seed}:letter:{k}"))
        rng = random.Random(f"{seed}:scan:{k}")
        stem = f"letter{k:03d}"
        out.add(stem, _scan(page, rng))
        if k < copies:
            _rescan_and_shrink(out, stem, page, rng, (465, 658), Image.Resampling.BILINEAR)
    return out


def _wood(size: tuple[int, int], seed: int) -> np.ndarray:
    """A wood-grain texture, (H, W, 3) float in 0-255."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    coarse = rng.standard_normal((8, 6))
    warp = np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((w, h), Image.BICUBIC))
    rings = np.sin((y * 38 + 2.5 * warp + 0.6 * x) * np.pi)
    fine = rng.standard_normal((h, w)) * 0.25
    v = 0.55 + 0.18 * rings + 0.08 * fine
    base = np.array([150, 100, 60], dtype=np.float64)
    return np.clip(v[..., None] * base[None, None, :] * 1.4, 0, 255)


def _texture_sources() -> dict[str, np.ndarray]:
    from lookalike.demo.samples import sample_photos

    out = {}
    for photo in sample_photos(("brick", "gravel", "moon")):
        out[photo.name] = np.asarray(photo.load())
    out["wood"] = _wood((512, 512), 7).astype(np.uint8)
    return out


def tiles(per_texture: int = 12, copies: int = 2, seed: int = 0) -> LabelledSet:
    """Non-overlapping 128-px tiles of each texture, shown at 256 px; ``copies`` tiles of
    each texture also re-saved (JPEG 50, 80% size) and mirrored."""
    out = LabelledSet("tiles")
    rng = random.Random(f"{seed}:tiles")
    for name, arr in _texture_sources().items():
        im = Image.fromarray(arr).convert("RGB")
        spots = [(x, y) for y in range(0, 512, 128) for x in range(0, 512, 128)]
        rng.shuffle(spots)
        for k, (x, y) in enumerate(spots[:per_texture]):
            tile = im.crop((x, y, x + 128, y + 128)).resize((256, 256), Image.Resampling.BICUBIC)
            stem = f"{name}{k:02d}"
            out.add(stem, tile)
            if k < copies:
                out.add(f"{stem}_q50", _jpeg(tile.resize((205, 205)), 50), stem)
                out.add(f"{stem}_flip", ImageOps.mirror(tile), stem)
    return out


def _objects(n: int, seed: int) -> list[Image.Image]:
    """``n`` different objects: rounded cut-outs of different places of the sample photos
    (two per photo at most, never overlapping), RGBA."""
    from lookalike.demo.samples import load_originals

    rng = random.Random(f"{seed}:objects")
    photos = [
        im
        for name, im in load_originals().items()
        if name not in ("brick", "grass", "gravel", "moon")
    ]
    out = []
    for k in range(n):
        im = photos[k % len(photos)]
        w, h = im.size
        side = min(w, h) // 2
        left = 0 if (k // len(photos)) % 2 == 0 else w - side  # two separate regions
        top = rng.randint(0, h - side)
        cut = im.crop((left, top, left + side, top + side)).resize((240, 240))
        mask = Image.new("L", cut.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle(
            (0, 0, 239, 239), radius=rng.randint(30, 110), fill=255
        )
        cut.putalpha(mask)
        out.append(cut)
    return out


def product_shots(n: int = 30, copies: int = 3, seed: int = 0) -> LabelledSet:
    """``n`` different objects shot close on one wooden table (the camera shifts a few
    pixels between shots); ``copies`` shots also re-saved (JPEG 40) and cropped (90%)."""
    out = LabelledSet("products")
    table = Image.fromarray(_wood((560, 460), 11).astype(np.uint8))
    for k, obj in enumerate(_objects(n, seed)):
        rng = random.Random(f"{seed}:shot:{k}")
        dx, dy = rng.randint(0, 40), rng.randint(0, 40)
        shot = table.crop((dx, dy, dx + 512, dy + 416))
        scale = rng.uniform(0.9, 1.1)
        o = obj.resize((round(240 * scale), round(240 * scale)))
        x, y = 256 - o.width // 2 + rng.randint(-30, 30), 208 - o.height // 2 + rng.randint(-20, 20)
        shadow = Image.new("RGBA", o.size, (0, 0, 0, 0))
        shadow.putalpha(o.getchannel("A").point(lambda a: a // 2))
        shot.paste(
            shadow.filter(ImageFilter.GaussianBlur(8)),
            (x + 10, y + 12),
            shadow.filter(ImageFilter.GaussianBlur(8)),
        )
        shot.paste(o, (x, y), o)
        stem = f"shot{k:03d}"
        out.add(stem, shot)
        if k < copies:
            out.add(f"{stem}_q40", _jpeg(shot, 40), stem)
            out.add(f"{stem}_crop", shot.crop((26, 21, 486, 395)), stem)
    return out


def form(seed: int, filled: int = 4) -> Image.Image:
    """One scanned application form of a fixed template: 15 labelled boxes, the first
    ``filled`` of them filled in by hand (own seed), one of four boxes ticked."""
    rng = random.Random(f"form:{seed}")
    page = Image.new("RGB", (620, 877), "white")
    d = ImageDraw.Draw(page)
    d.text((40, 30), "APPLICATION FOR A PERMIT", font=_font("DejaVuSans-Bold.ttf", 26), fill=0)
    d.line((40, 90, 580, 90), fill=0, width=2)
    small, hand = _font("DejaVuSans.ttf", 13), _font("DejaVuSerif-Italic.ttf", 17)
    for k in range(15):
        y = 110 + 46 * k
        d.text((40, y + 8), f"Field {k + 1} *", font=small, fill=0)
        d.rectangle((200, y, 580, y + 34), outline=0, width=1)
        if k < filled:
            words = " ".join(rng.choice(_WORDS).upper() for _ in range(rng.randint(1, 3)))
            d.text((206, y + 7), words, font=hand, fill=(10, 20, 110))
    tick = rng.randrange(4)
    for i in range(4):
        d.rectangle((40 + i * 140, 810, 56 + i * 140, 826), outline=0, width=1)
    d.line((40 + tick * 140, 810, 56 + tick * 140, 826), fill=(10, 20, 110), width=2)
    return _scan(page, rng)


def forms(n: int = 16, copies: int = 2, filled: int = 4, seed: int = 0) -> LabelledSet:
    """``n`` forms of one template, each filled in differently (:func:`form`); ``copies``
    of them scanned again and re-saved smaller (JPEG 40)."""
    out = LabelledSet("forms")
    for k in range(n):
        stem = f"form{k:03d}"
        out.add(stem, form(seed * 1000 + k, filled))
        if k < copies:
            rng = random.Random(f"{seed}:form-rescan:{k}")
            page = out.images[stem]
            _rescan_and_shrink(out, stem, page, rng, (465, 658), Image.Resampling.BILINEAR)
    return out


def invoice(
    name: str = "Jonathan Appleseed", date: str = "12/03/2024", qty: int = 3
) -> Image.Image:
    """A realistic invoice: letterhead, number and date, customer, four item lines, total."""
    im = Image.new("RGB", (800, 1100), "white")
    d = ImageDraw.Draw(im)
    big = _font("DejaVuSans-Bold.ttf", 28)
    med, sm = _font("DejaVuSans.ttf", 16), _font("DejaVuSans.ttf", 14)
    d.text((50, 40), "BLUE RIVER SUPPLIES LTD", font=big, fill=0)
    d.text((50, 80), "44 Mill Lane, Springfield  VAT GB 123 4567 89", font=sm, fill=(80, 80, 80))
    d.text((560, 40), "INVOICE", font=big, fill=(30, 60, 120))
    d.text((560, 90), "No. 1001", font=med, fill=0)
    d.text((560, 115), f"Date: {date}", font=med, fill=0)
    d.text((50, 150), "Bill to:", font=med, fill=0)
    d.text((50, 175), name, font=med, fill=0)
    d.text((50, 198), "7 Orchard Street, Lakeside", font=med, fill=0)
    d.rectangle((50, 260, 750, 290), fill=(220, 225, 235))
    for x, t in ((60, "Description"), (430, "Qty"), (520, "Unit"), (640, "Amount")):
        d.text((x, 266), t, font=med, fill=0)
    y, total = 300, 0.0
    items = [("Copy paper A4 box", qty, 24.5), ("Toner cartridge", 1, 89.0),
             ("Stapler", 2, 12.75), ("Envelopes C5 x500", 1, 31.2)]  # fmt: skip
    for desc, q, u in items:
        for x, t in ((60, desc), (430, str(q)), (520, f"{u:.2f}"), (640, f"{q * u:.2f}")):
            d.text((x, y), t, font=med, fill=0)
        d.line((50, y + 26, 750, y + 26), fill=(200, 200, 200))
        y, total = y + 32, total + q * u
    d.text((520, y + 20), "Total:", font=big, fill=0)
    d.text((640, y + 24), f"{total:.2f}", font=med, fill=0)
    d.text((50, 1000), "Payment within 30 days. Bank: 12-34-56 Acc 87654321.", font=sm, fill=0)
    return im


def invoices(n: int = 12, copies: int = 2, seed: int = 0) -> LabelledSet:
    """``n`` scanned invoices of one template (:func:`invoice`), each with its own
    customer, date and quantity (so its own total); ``copies`` of them scanned again and
    re-saved smaller (JPEG 40)."""
    names = ["Jonathan Appleseed", "Maria Gonzales", "Peter Smithers", "Anna Bell", "Li Wei"]
    out = LabelledSet("invoices")
    for k in range(n):
        rng = random.Random(f"{seed}:invoice:{k}")
        date = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2024"
        page = invoice(rng.choice(names), date, rng.randint(1, 9))
        stem = f"invoice{k:03d}"
        out.add(stem, _scan(page, rng))
        if k < copies:
            _rescan_and_shrink(out, stem, page, rng, (480, 660), Image.Resampling.LANCZOS)
    return out


#: Layouts of :func:`sheet`: width, row height, font size, columns, rows ("fine": 16-px
#: rows on 1,920 px, 5% of its tiles blank at 1,024 px; review of #19).
SHEET_LAYOUTS = {"sparse": (1200, 32, 17, 8, 22), "dense": (1200, 24, 14, 10, 30),
                 "wide": (1600, 20, 13, 14, 40), "banded": (1400, 22, 14, 10, 36),
                 "large": (2560, 27, 18, 16, 48), "fine": (1920, 16, 11, 16, 56)}  # fmt: skip


def sheet(seed: int | str, layout: str = "sparse", changed: int | None = None) -> Image.Image:
    """A screenshot of a spreadsheet of one template (:data:`SHEET_LAYOUTS`; "banded",
    "large": every other row grey): a coloured title bar, a grid, a name in the first column and a
    number in every other cell, each drawn from ``seed``; ``changed``: that cell's number
    (counted row by row) one more, the rest as they are (another version of the sheet)."""
    width, row_h, size, cols, rows = SHEET_LAYOUTS[layout]
    rng = random.Random(f"sheet:{seed}")
    im = Image.new("RGB", (width, 60 + row_h * rows + 20), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, width, 50), fill=(33, 115, 70))
    d.text((20, 12), "Budget 2024.xlsx", font=_font("DejaVuSans-Bold.ttf", 24), fill="white")
    font, cell_w = _font("DejaVuSans.ttf", size), (width - 40) // cols
    for r in range(rows):
        for c in range(cols):
            x, y = 20 + c * cell_w, 60 + r * row_h
            band = (242, 242, 242) if layout in ("banded", "large") and r % 2 else None
            d.rectangle((x, y, x + cell_w, y + row_h), fill=band, outline=(210, 210, 210))
            value = rng.randint(0, 99999)
            text = rng.choice(_WORDS[:30]) if c == 0 else f"{value + (r * cols + c == changed):,}"
            d.text((x + 4, y + (row_h - size) // 2 - 1), text, font=font, fill=0)
    return im


def _shared_again(out: LabelledSet, stem: str, im: Image.Image, rng: random.Random) -> None:
    """Two copies of a screenshot as people share it: re-saved at 60% of the size as JPEG
    50, and cropped by a few pixels at each side (the window's frame) as JPEG 80."""
    w, h = im.size
    small = im.resize((w * 3 // 5, h * 3 // 5), Image.Resampling.LANCZOS)
    out.add(f"{stem}_shared", _jpeg(small, 50), stem)
    box = (rng.randint(2, 12), rng.randint(2, 12), w - rng.randint(2, 12), h - rng.randint(2, 12))
    out.add(f"{stem}_crop", _jpeg(im.crop(box), 80), stem)


def sheets(n: int = 12, copies: int = 3, layout: str = "sparse", seed: int = 0) -> LabelledSet:
    """``n`` screenshots of spreadsheets of one template (:func:`sheet`), every number its
    own; ``copies`` of them shared again (:func:`_shared_again`)."""
    out = LabelledSet(f"sheets-{layout}")
    for k in range(n):
        stem = f"sheet{k:03d}"
        im = sheet(f"{seed}:{k}", layout)
        out.add(stem, im)
        if k < copies:
            _shared_again(out, stem, im, random.Random(f"{seed}:sheet-crop:{k}"))
    return out


def slide(seed: int | str, number: int = 2) -> Image.Image:
    """A 1,280x720 slide of one template (a dark title band, a footer band, 4-6 bullet
    lines of words drawn from ``seed``, page ``number``; review of #19's ninth pass)."""
    rng = random.Random(f"slide:{seed}")
    im = Image.new("RGB", (1280, 720), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 1280, 110), fill=(31, 56, 100))
    d.rectangle((0, 690, 1280, 720), fill=(31, 56, 100))
    title = " ".join(rng.choice(_WORDS).title() for _ in range(3))
    d.text((50, 30), title, font=_font("DejaVuSans-Bold.ttf", 40), fill="white")
    body = _font("DejaVuSans.ttf", 28)
    for i in range(rng.randint(4, 6)):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 8)))
        d.text((80, 160 + 80 * i), "\u2022 " + words, font=body, fill=(30, 30, 30))
    d.text((1180, 695), str(number), font=_font("DejaVuSans.ttf", 18), fill="white")
    return im


def mail_screen(seed: int | str) -> Image.Image:
    """A 1,440x900 screenshot of a mail client's inbox (a toolbar, folders, 22 messages:
    sender, subject words and time drawn from ``seed``; review of #19's ninth pass)."""
    rng = random.Random(f"screen:{seed}")
    im = Image.new("RGB", (1440, 900), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 1440, 40), fill=(235, 235, 235))
    d.rectangle((0, 40, 260, 900), fill=(246, 246, 246))
    f, bold = _font("DejaVuSans.ttf", 15), _font("DejaVuSans-Bold.ttf", 15)
    for i, w in enumerate(["Inbox", "Starred", "Sent", "Drafts", "Archive", "Spam", "Trash"]):
        d.text((30, 70 + 32 * i), w, font=f, fill=(60, 60, 60))
    for i in range(22):
        y = 60 + 38 * i
        sender = rng.choice(_WORDS).title() + " " + rng.choice(_WORDS).title()
        d.text((290, y), sender, font=bold, fill=0)
        subject = " ".join(rng.choice(_WORDS) for _ in range(9))
        d.text((520, y), subject, font=f, fill=(90, 90, 90))
        d.text((1340, y), f"{rng.randint(1, 12)}:{rng.randint(10, 59)}", font=f, fill=(90, 90, 90))
        d.line((280, y + 30, 1440, y + 30), fill=(225, 225, 225))
    return im


def mail_screens(n: int = 10, copies: int = 3, seed: int = 0) -> LabelledSet:
    """``n`` screenshots of one mail client (:func:`mail_screen`), ``copies`` of them
    shared again (:func:`_shared_again`)."""
    out = LabelledSet("mail")
    for k in range(n):
        stem, key = f"screen{k:02d}", k + 1000 * seed  # seed 0: the review's set
        im = mail_screen(key)
        out.add(stem, im)
        if k < copies:
            _shared_again(out, stem, im, random.Random(f"crop:{key}"))
    return out


def slides(n: int = 10, copies: int = 3, seed: int = 0) -> LabelledSet:
    """``n`` slides of one template (:func:`slide`), ``copies`` of them shared again
    (:func:`_shared_again`)."""
    out = LabelledSet("slides")
    for k in range(n):
        stem, key = f"slide{k:02d}", k + 1000 * seed  # seed 0: the review's set
        im = slide(key, number=k + 2)
        out.add(stem, im)
        if k < copies:
            _shared_again(out, stem, im, random.Random(f"crop:{key}"))
    return out


# ------------------------------------------------------------------------ copy set
def _caption(im: Image.Image, rng: random.Random, _o: Image.Image) -> Image.Image:
    """A caption in DejaVu Sans Bold along the bottom (not the calibration's own font)."""
    out = im.copy()
    w, h = out.size
    d = ImageDraw.Draw(out)
    d.text((w // 20, h - h // 7), rng.choice(["Summer 2023", "@lookalike", "family trip"]),
           font=_font("DejaVuSans-Bold.ttf", max(12, h // 11)), fill=(255, 255, 255),
           stroke_width=2, stroke_fill=(0, 0, 0))  # fmt: skip
    return out


def _rotate5(im: Image.Image, _rng: random.Random, _o: Image.Image) -> Image.Image:
    return im.rotate(5, Image.Resampling.BICUBIC, expand=False)  # black corners kept


def _jpeg15(im: Image.Image, _rng: random.Random, _o: Image.Image) -> Image.Image:
    return _jpeg(im, 15)


def _half(im: Image.Image, _rng: random.Random, _o: Image.Image) -> Image.Image:
    return im.resize((max(8, im.width // 2), max(8, im.height // 2)), Image.Resampling.LANCZOS)


def _edits() -> dict[str, Callable[[Image.Image, random.Random, Image.Image], Image.Image]]:
    from lookalike.demo.samples import EDITS

    return {
        "crop30": EDITS["crop30"],
        "crop50": EDITS["crop50"],
        "jpeg20": EDITS["jpeg20"],
        "jpeg15": _jpeg15,
        "rotate10": EDITS["rotate10"],
        "rotate5": _rotate5,
        "hflip": EDITS["hflip"],
        "grey": EDITS["grey"],
        "colour": EDITS["colour"],
        "text": EDITS["text"],
        "caption": _caption,
        "resize25": EDITS["resize25"],
        "half": _half,
    }


#: One edit each, and two in a row (``"a+b"``: ``b`` applied to ``a``'s result).
COPY_EDITS = ("crop30", "jpeg20", "rotate10", "hflip", "grey", "colour", "text", "resize25")
COPY_TWICE = ("crop50+jpeg15", "hflip+caption", "rotate5+half", "colour+crop30", "grey+rotate5")


def copy_set(
    edits: tuple[str, ...] = COPY_EDITS, twice: tuple[str, ...] = COPY_TWICE, seed: int = 0
) -> LabelledSet:
    """Every sample photo and its edited copies (21 photos: 21 x 14 files by default)."""
    from lookalike.demo.samples import load_originals

    table = _edits()
    originals = load_originals()
    names = list(originals)
    out = LabelledSet("copies")
    for i, name in enumerate(names):
        im = originals[name]
        other = originals[names[(i + 1) % len(names)]]
        out.add(name, im)
        for edit in (*edits, *twice):
            rng = random.Random(f"{seed}:{name}:{edit}")
            copy = im
            for step in edit.split("+"):
                copy = table[step](copy, rng, other).convert("RGB")
            out.add(f"{name}__{edit.replace('+', '_')}", copy, name)
    return out


SETS: dict[str, Callable[[], LabelledSet]] = {
    "letters": letters,
    "tiles": tiles,
    "products": product_shots,
    "copies": copy_set,
    # Forms of one template filled in differently: the second look takes them for copies
    # (see the xfail tests); the benchmark shows how many.
    "forms": lambda: forms(n=30, copies=3),
    # Screenshots of spreadsheets of one template, other figures in every cell (#19, ninth
    # pass); "sheets-wide": small print (13 px on 1,600), whose shared copies are 8 px.
    "sheets": lambda: sheets(n=12, copies=3, layout="dense"),
    "sheets-sparse": lambda: sheets(n=12, copies=3, layout="sparse"),
    "sheets-wide": lambda: sheets(n=12, copies=3, layout="wide"),
    # Tenth pass: 16-px rows on 1,920 px (figures 11 px), and banded rows on 2,560 px.
    "sheets-fine": lambda: sheets(n=12, copies=3, layout="fine"),
    "sheets-large": lambda: sheets(n=12, copies=3, layout="large"),
    # Slides and mail screenshots of one template (review of the ninth pass): told apart
    # already; their shared copies were seldom found (the calibration, tenth pass).
    "slides": lambda: slides(n=10, copies=3),
    "mail": lambda: mail_screens(n=10, copies=3),
}
