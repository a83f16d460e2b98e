"""Issue #19 benchmark: look-alikes and copies, side by side in one run. Prints one JSON
object.

    .venv/bin/python bench/bench_lookalikes.py --dir /tmp/la          # every set
    .venv/bin/python bench/bench_lookalikes.py --dir /tmp/la --sets letters,copies
    PYTHONPATH=/path/to/old/src .venv/bin/python bench/bench_lookalikes.py --dir /tmp/old

The sets (``tests/lookalikes.py``, generated, no download): ``letters`` (30 letters in
one layout, 3 of them scanned twice more), ``tiles`` (12 tiles each of 4 textures, 2 of
each with two copies), ``products`` (30 objects on one wooden table, 3 with two copies),
``copies`` (21 sample photos x 13 edited copies, 5 of them two edits in a row), ``forms``
(30 forms of one template, 4 of 15 fields filled in differently, 3 scanned again and
re-saved: the review's case, which the second look gets wrong), ``sheets``,
``sheets-sparse``, ``sheets-wide``, ``sheets-fine`` and ``sheets-large`` (12 screenshots
of spreadsheets of one template, other figures in every cell, 3 of them shared again at
60% as JPEG 50 and cropped), ``slides`` and ``mail`` (10 slides, 10 screenshots of a
mail client's inbox, each of one template, 3 shared again the same way). Each set
is indexed with the trained EfficientNet-Lite0 (``tf_efficientnet_lite0``, the
``offline`` extra's weights, average pooling: the default), calibrated as on a first run,
and searched with the defaults; then with ``verify=False``. Pair precision and recall are
over all unordered pairs of files in the groups; "distinct pairs grouped" counts pairs of
different captures put in one group. ``claimed`` is the calibration's precision for the
mode used. imagededup's PHash and DHash (default ``max_distance_threshold=10``) run on
the same files in the same run. With ``PYTHONPATH`` at an older checkout (no second
look) the same script measures the code before #19.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from _common import forget_looks  # noqa: E402
from bench_duplicates import imagededup_scores  # noqa: E402  (one copy for both benches)


def pairs_of(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)}


def score(found: set[frozenset[str]], truth: set[frozenset[str]]) -> dict:
    tp = len(found & truth)
    return {
        "precision": round(tp / len(found), 4) if found else 1.0,
        "recall": round(tp / len(truth), 4) if truth else 1.0,
        "pairs_found": len(found),
        "distinct_pairs_grouped": len(found - truth),
    }


def stems(report) -> list[list[str]]:
    return [[Path(m.path).stem for m in g.members] for g in report.groups]


def one_set(name: str, work: Path, pool: str) -> dict:
    import lookalikes

    from lookalike import Index

    data = lookalikes.SETS[name]()
    folder = work / "sets" / name
    if not folder.exists():
        data.write(folder)
    truth = data.true_pairs()
    out: dict = {"images": len(data.images), "true_pairs": len(truth)}
    db = work / f"{name}_{pool}.db"
    with Index.open(db, model="tf_efficientnet_lite0", pool=pool) as idx:
        t0 = time.perf_counter()
        idx.update(folder)
        out["index_seconds"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        cal = idx.calibrate_duplicates()
        out["calibration_seconds"] = round(time.perf_counter() - t0, 1)
        out["calibration"] = cal.sentence()
        forget_looks(db)  # a first run, whatever a rerun of this bench remembered
        report = idx.duplicate_report()
        out["default"] = dict(
            score(pairs_of(stems(report)), truth),
            threshold=report.threshold,
            claimed=cal.precision,
            seconds=round(report.seconds, 2),
        )
        out["default"]["claimed_minus_measured"] = round(
            cal.precision - out["default"]["precision"], 4
        )
        if hasattr(cal, "second_look"):  # the code of #19 and later
            out["default"].update(
                looked=report.looked,
                rejected=report.rejected,
                passed_over=report.passed_over,
                look_seconds=round(report.look_seconds, 2),
                ms_per_look=round(1000 * report.look_seconds / max(1, report.looked), 1),
            )
            plain = idx.duplicate_report(verify=False)
            claimed = cal.precision_unverified
            out["no_verify"] = dict(
                score(pairs_of(stems(plain)), truth),
                threshold=plain.threshold,
                claimed=claimed,
            )
            if claimed is not None:
                out["no_verify"]["claimed_minus_measured"] = round(
                    claimed - out["no_verify"]["precision"], 4
                )
    out["imagededup"] = imagededup_scores(folder, truth, lambda p: p.stem, score)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", help="work folder (kept; reruns reuse its sets and indexes)")
    ap.add_argument(
        "--sets",
        default="letters,tiles,products,copies,forms,sheets,sheets-sparse,sheets-wide,"
        "sheets-fine,sheets-large,slides,mail",
    )
    ap.add_argument("--pool", default="avg")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="lookalikes-"))
    t0 = time.perf_counter()
    import lookalike

    out: dict = {"code": os.path.dirname(lookalike.__file__), "pool": args.pool}
    for name in args.sets.split(","):
        out[name] = one_set(name, work, args.pool)
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    out["load_average"] = [round(v, 2) for v in os.getloadavg()]
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
