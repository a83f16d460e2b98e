"""Duplicate groups as text, JSON, CSV, and a self-contained HTML page for review.

Pure functions over :class:`~lookalike.duplicates.DuplicateReport` (the HTML page reads
thumbnails from the files). Every file name shown in HTML is escaped.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Sequence

from .types import DuplicateGroup, DuplicateReport, MoveReport


def _safe(text: str) -> str:
    """A path as printable text: undecodable bytes (surrogate escapes) shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _size(n: int) -> str:
    if n < 0:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _resolution(width: int, height: int) -> str:
    return f"{width}x{height}" if width and height else "?"


def report_json(report: DuplicateReport) -> str:
    """``{"threshold", "images", "seconds", "groups": [{"keep", "min_score", "members"}]}``;
    each member ``{"path", "score", "verified"}``."""
    data = report.to_dict()
    for g in data["groups"]:
        g["keep"] = _safe(g["keep"])
        for m in g["members"]:
            m["path"] = _safe(m["path"])
    return json.dumps(data, ensure_ascii=False)


def _n(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def threshold_line(report: DuplicateReport, *, calibration: bool = True) -> str:
    """The threshold actually used and where it came from (given, calibrated, default)."""
    from .api import ThresholdChoice

    cal = report.calibration if calibration else None
    choice = ThresholdChoice(report.threshold, report.threshold_source, cal, report.second_look)
    return choice.sentence()


def summary_line(report: DuplicateReport) -> str:
    """``2 groups: 3 duplicates of 2 kept files, among 47 images in 14.2 s``. "copies"
    stays the calibration's word (edited copies it made); these are files found."""
    dups = sum(len(g.members) - 1 for g in report.groups)
    among = f"among {_n(report.images, 'image')} in {report.seconds:.1f} s"
    if not report.groups:
        return f"no duplicates {among}"
    return (
        f"{_n(len(report.groups), 'group')}: {_n(dups, 'duplicate')} of "
        f"{_n(len(report.groups), 'kept file')}, {among}"
    )


def report_lines(report: DuplicateReport, *, calibration_line: bool = True) -> list[str]:
    """The readable list: one block per group, the kept file marked ``keep``."""
    lines = [threshold_line(report, calibration=calibration_line)]
    lines.append(summary_line(report))
    lines.append(look_line(report))
    for n, g in enumerate(report.groups, 1):
        lines.append("")
        lines.append(f"group {n}: {len(g.members)} files, min score {g.min_score:.3f}")
        for i, m in enumerate(g.members):
            mark = "keep" if i == 0 else f"{m.score:.3f}"
            sure = " " if i == 0 or m.verified else "?"
            lines.append(
                f"  {mark:>5}{sure} {_resolution(m.width, m.height):>11}  {_size(m.size):>9}  "
                f"{_safe(m.path)}"
            )
    if any(not m.verified for g in report.groups for m in g.members):
        lines.append("")
        lines.append("? = grouped on the cosine alone, not confirmed by the second look")
    return lines


def look_line(report: DuplicateReport) -> str:
    """What the second look did (or that it was off)."""
    if not report.second_look:
        return "second look: off (--no-verify): groups rest on the cosine alone"
    again = f"; {report.remembered} remembered from earlier runs" if report.remembered else ""
    line = (
        f"second look: {report.looked} candidate pairs looked at, "
        f"{report.looked - report.rejected} copies, {report.rejected} look-alikes set apart "
        f"({report.look_seconds:.1f} s{again})"
    )
    if report.inferred:
        line += f"; {report.inferred} more pairs are copies of one same image"
    if report.undecided:
        line += f"; {report.undecided} pairs it could not decide (a file unreadable or too thin)"
    if report.passed_over:
        why = (
            "the run's budget of looks spent"
            if report.look_budget_spent
            else "images with many look-alikes"
        )
        line += (
            f"; {report.passed_over} pairs passed over, not grouped ({why}: "
            "--threshold higher looks at fewer)"
        )
    return line


CSV_COLUMNS = (
    "group", "keep", "path", "score", "min_score", "size", "width", "height", "verified",
)  # fmt: skip


def report_csv(groups: Sequence[DuplicateGroup]) -> str:
    """One row per member: group number, whether it is kept, path, score, facts."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for n, g in enumerate(groups, 1):
        for i, m in enumerate(g.members):
            row = [n, int(i == 0), _safe(m.path), f"{m.score:.6f}", f"{g.min_score:.6f}"]
            writer.writerow([*row, m.size, m.width, m.height, int(m.verified)])
    return buf.getvalue()


def thumbnail_data_uri(path: str, max_side: int = 160) -> str | None:
    """A small JPEG of the image as a ``data:`` URI, or ``None`` when it cannot be read."""
    from ..decode import load_for_display

    try:
        img = load_for_display(path, max_side=max_side)
    except Exception:  # any decoder failure: the page shows "no preview"
        return None
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}.meta{color:#555}
section.group{border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.6em}
section.group h2{font-size:1em;margin:.2em 0 .6em}
.members{display:flex;flex-wrap:wrap;gap:.8em}
figure{margin:0;width:180px;padding:6px;border:2px solid #ddd;border-radius:4px}
figure.keep{border-color:#2a8a2a;background:#eef8ee}
figure img{max-width:168px;max-height:168px;display:block;margin:auto}
figcaption{font-size:.8em;word-break:break-all}
.badge{font-weight:bold;color:#2a8a2a}.unsure{font-weight:bold;color:#b06000}.nopreview{height:80px;background:#eee;
display:flex;align-items:center;justify-content:center;color:#888}
"""


def report_html(report: DuplicateReport, *, thumbnails: bool = True, max_side: int = 160) -> str:
    """A self-contained review page: thumbnails inline, the kept file marked, scores,
    sizes and resolutions. Every name is HTML-escaped."""
    e = html.escape
    head = threshold_line(report).removeprefix("threshold ")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>lookalike duplicates</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Duplicate groups</h1>",
        f"<p class='meta' data-threshold='{report.threshold}'>threshold {e(head)}; "
        f"{_n(len(report.groups), 'group')} among {_n(report.images, 'image')}; "
        f"{e(look_line(report))}</p>",
    ]
    for n, g in enumerate(report.groups, 1):
        parts.append(
            f"<section class='group' data-group='{n}' data-min-score='{g.min_score}'>"
            f"<h2>Group {n}: {len(g.members)} files, min score {g.min_score:.3f}</h2>"
            "<div class='members'>"
        )
        for i, m in enumerate(g.members):
            shown = _safe(m.path)
            uri = thumbnail_data_uri(m.path, max_side) if thumbnails else None
            img = (
                f"<img src='{uri}' alt='{e(os.path.basename(shown))}'>"
                if uri
                else "<div class='nopreview'>no preview</div>"
            )
            badge = "<span class='badge'>KEEP</span> " if i == 0 else ""
            if i and not m.verified:
                badge = "<span class='unsure'>not verified</span> "
            parts.append(
                f"<figure class='{'keep' if i == 0 else 'copy'}' data-path='{e(shown)}' "
                f"data-score='{m.score}' data-verified='{int(m.verified)}'>{img}"
                f"<figcaption>{badge}"
                f"score {m.score:.3f}<br>{_resolution(m.width, m.height)}, {_size(m.size)}"
                f"<br>{e(shown)}</figcaption></figure>"
            )
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def move_lines(report: MoveReport) -> list[str]:
    """What ``--move-to`` did (or, on a dry run, would do)."""
    verb = "would move" if report.dry_run else "moved"
    lines = [f"{verb} {_safe(a)} -> {_safe(b)}" for a, b in report.moved]
    for p in report.skipped:
        lines.append(
            f"skipped {_safe(p.path)}: {p.reason}" + (f" ({_safe(p.detail)})" if p.detail else "")
        )
    summary = f"{len(report.moved)} files {verb}, {len(report.skipped)} skipped"
    if report.manifest:
        summary += f"; undo manifest: {_safe(report.manifest)}"
    lines.append(summary)
    return lines
