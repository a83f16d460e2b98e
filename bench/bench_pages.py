"""Pages told apart by one character, and copies of pages kept (#19, fifth pass).

The second look alone (``compare_looks`` / ``Verifier``, no index, no model) on generated
pages (``tests/lookalikes.py``):

- copies: an invoice, a form and a letter each under 15 edits a user's copies go through
  (JPEG, resizes, sharpening, binarization, gamma, contrast, noise, turns, a photocopy,
  blur, two rescans, a crop, a slight perspective), and the copy pairs of five generated
  sets (letters, forms, invoices: rescans and small JPEG re-saves);
- distinct: an invoice against itself with one thing changed (a year's last digit, a day,
  a month, one letter of the name, the quantity), clean, both scanned, one photocopied
  and one re-saved at 75% (JPEG 45), and every distinct pair of two invoice sets of one
  template (own customer, date and quantity; some rescanned and re-saved small).

These pages, seeds and values were not the ones the glyph comparison was tuned on. Prints
one JSON object: copies confirmed, distinct pairs accepted (the harmful error), their
names, and the time::

    PYTHONPATH=src python bench/bench_pages.py > pages.json
"""

from __future__ import annotations

import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import lookalikes  # noqa: E402

from lookalike.duplicates.verify import Verifier, compare_looks, prepare  # noqa: E402

WHITE = (255, 255, 255)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _photocopy(im: Image.Image) -> Image.Image:
    grey = ImageOps.grayscale(im).filter(ImageFilter.GaussianBlur(1.0))
    return ImageEnhance.Contrast(grey).enhance(1.6).convert("RGB")


def edits(p: Image.Image) -> dict[str, Image.Image]:
    """A page's copies as users make them."""
    w, h = p.size
    grey = ImageOps.grayscale(p)
    noise = np.random.default_rng(7).normal(0, 6, (h, w, 3))
    return {
        "q25": _jpeg(p, 25),
        "60%": p.resize((int(w * 0.6), int(h * 0.6)), Image.Resampling.LANCZOS),
        "75%q45": _jpeg(p.resize((int(w * 0.75), int(h * 0.75)), Image.Resampling.BICUBIC), 45),
        "sharpen": p.filter(ImageFilter.UnsharpMask(1.5, 120, 2)),
        "binarize": grey.point(lambda v: 255 if v > 140 else 0).convert("RGB"),
        "gamma0.6": Image.fromarray((255 * (np.asarray(p) / 255.0) ** 0.6).astype(np.uint8)),
        "contrast": ImageEnhance.Contrast(p).enhance(1.5),
        "noise6": Image.fromarray(
            (np.asarray(p, np.float32) + noise).clip(0, 255).astype(np.uint8)
        ),
        "rot1.5q70": _jpeg(p.rotate(1.5, Image.Resampling.BICUBIC, fillcolor=WHITE), 70),
        "photocopy": _photocopy(p),
        "blur1.2": p.filter(ImageFilter.GaussianBlur(1.2)),
        "scan": lookalikes._scan(p, random.Random(21)),
        "scan2": lookalikes._scan(p, random.Random(22)),
        "crop2": p.crop((int(w * 0.02), int(h * 0.02), int(w * 0.98), int(h * 0.98))),
        "persp": p.transform(
            p.size,
            Image.Transform.PERSPECTIVE,
            (1.0, -0.008, 4, 0.004, 1.0, -3, -1e-5, 1e-5),
            Image.Resampling.BICUBIC,
            fillcolor=WHITE,
        ),
    }


def main() -> None:
    copies: list[tuple[str, bool]] = []
    distinct: list[tuple[str, bool]] = []

    def judge(name: str, a: Image.Image, b: Image.Image, truth: bool) -> None:
        (copies if truth else distinct).append(
            (name, bool(compare_looks(prepare(a), prepare(b)).copy))
        )

    t0 = time.perf_counter()
    base = {"name": "Anna Bell", "date": "05/07/2023", "qty": 6}
    invoice = lookalikes.invoice(**base)  # type: ignore[arg-type]
    pages = {
        "invoice": invoice,
        "form": lookalikes.form(11),
        "letter": lookalikes._letter(random.Random("7:letter:2")),
    }
    for page_name, page in pages.items():
        for edit, copy in edits(page).items():
            judge(f"{page_name} {edit}", page, copy, True)
    changes = {
        "year": {"date": "05/07/2028"}, "day": {"date": "06/07/2023"},
        "month": {"date": "05/01/2023"}, "Ball": {"name": "Anna Ball"},
        "Anne": {"name": "Anne Bell"}, "qty9": {"qty": 9}, "qty5": {"qty": 5},
    }  # fmt: skip
    for change, values in changes.items():
        other = lookalikes.invoice(**{**base, **values})  # type: ignore[arg-type]
        judge(f"invoice {change}", invoice, other, False)
        scans = (
            lookalikes._scan(invoice, random.Random(31)),
            lookalikes._scan(other, random.Random(32)),
        )
        judge(f"invoice {change} scans", *scans, False)
        judge(f"invoice {change} photocopy", invoice, _photocopy(other), False)
        small = _jpeg(other.resize((600, 825), Image.Resampling.BICUBIC), 45)
        judge(f"invoice {change} 75%q45", invoice, small, False)
    sets = {
        "letters": lambda: lookalikes.letters(n=6, copies=3, seed=3),
        "forms8": lambda: lookalikes.forms(n=6, copies=3, filled=8, seed=3),
        "forms4": lambda: lookalikes.forms(n=6, copies=3, seed=4),
        "invoices2": lambda: lookalikes.invoices(n=12, copies=3, seed=2),
        "invoices3": lambda: lookalikes.invoices(n=12, copies=3, seed=3),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in sets.items():
            data = make()
            paths = {stem: str(p) for stem, p in data.write(Path(tmp) / kind).items()}
            truth = data.true_pairs()
            verifier = Verifier(workers=1)
            stems = sorted(paths)
            for i, x in enumerate(stems):
                for y in stems[i + 1 :]:
                    same = frozenset((x, y)) in truth
                    if not same and not kind.startswith("invoices"):
                        continue  # letters and forms apart: settled by the page bar
                    verdict = verifier.verdict(paths[x], paths[y])
                    (copies if same else distinct).append((f"{kind} {x}-{y}", bool(verdict.copy)))
    print(json.dumps({
        "copies_confirmed": sum(ok for _, ok in copies), "copies": len(copies),
        "distinct_accepted": sum(ok for _, ok in distinct), "distinct": len(distinct),
        "lost_copies": [n for n, ok in copies if not ok],
        "accepted_distinct": [n for n, ok in distinct if ok],
        "seconds": round(time.perf_counter() - t0, 1),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
