"""Plain-text and JSON views of results. Pure functions: strings in, strings out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..paths import printable
from ..types import Hit, IndexReport


def _safe(text: str) -> str:
    """A path as one printable line (:func:`lookalike.paths.printable`)."""
    return printable(text)


def hits_json(query: str | dict[str, Any], hits: Sequence[Hit]) -> str:
    """The ``search --json`` object: ``{"query": str, "results": [{rank, score, path}]}``.

    ``query`` is the image's path, or for words and mixtures the description of the terms
    (:meth:`lookalike.query.Query.describe`: ``{"text", "not", "image"}``).
    """
    return json.dumps(
        {
            "query": _safe_all(query),
            "results": [{**h.to_dict(), "path": _safe(h.path)} for h in hits],
        },
        ensure_ascii=False,
    )


def _safe_all(value: Any) -> Any:
    """:func:`_safe` applied to every string inside lists and dicts."""
    if isinstance(value, str):
        return _safe(value)
    if isinstance(value, dict):
        return {k: _safe_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_safe_all(v) for v in value]
    return value


def hits_table(hits: Sequence[Hit]) -> str:
    """Rank, score and path columns, one hit per line."""
    if not hits:
        return "no results"
    lines = [f"{'rank':>4}  {'score':>6}  path"]
    lines += [f"{h.rank:>4}  {h.score:6.3f}  {_safe(h.path)}" for h in hits]
    return "\n".join(lines)


def report_lines(report: IndexReport, *, max_failed: int = 20) -> list[str]:
    """The summary printed after ``lookalike index``."""
    lines = [
        f"{report.added} added, {report.updated} updated, {report.removed} removed, "
        f"{report.unchanged} unchanged, {len(report.failed)} failed "
        f"in {report.seconds:.1f} s"
        + (f" ({report.images_per_second:.1f} images/s embedding)" if report.embedded else "")
    ]
    for f in report.failed[:max_failed]:
        lines.append(
            f"  failed: {_safe(f.path)}: {f.reason}" + (f" ({f.detail})" if f.detail else "")
        )
    if len(report.failed) > max_failed:
        lines.append(f"  ... and {len(report.failed) - max_failed} more (see `lookalike info`)")
    return lines


def info_lines(info: dict[str, Any]) -> list[str]:
    """``lookalike info`` as aligned ``key: value`` lines."""
    pre = info.get("preprocessing") or {}
    lines = [
        f"index:          {info['db']}",
        f"images:         {info['images']}",
        f"model:          {info.get('model') or '(none yet)'}",
        f"weights:        {info.get('weights') or '-'}"
        + (f" ({info['weights_path']})" if info.get("weights_path") else ""),
        f"pooling:        {info.get('pooling') or '-'}",
        *_clip_lines(info.get("clip")),
        "preprocessing:  "
        + (
            f"{pre.get('mode')} to {pre.get('size')}, {pre.get('interpolation')}, "
            f"mean {pre.get('mean')}, std {pre.get('std')}"
            if pre
            else "-"
        ),
        f"dimension:      {info.get('dim') or '-'}",
        *_folder_lines(info["folders"]),
    ]
    if info.get("vectors"):
        lines.append(f"vector cache:   {info['vectors']}")
    failed = info.get("failed") or []
    lines.append(f"failed files:   {len(failed)}")
    for f in failed:
        lines.append(
            f"  {_safe(f['path'])}: {f['reason']}"
            + (f" ({f['detail']})" if f.get("detail") else "")
        )
    if "duplicate_threshold" in info:
        cal = info["duplicate_threshold"]
        lines.append(
            "duplicates:     "
            + (
                f"threshold {cal['sentence']}"
                if cal
                else "not calibrated yet (the first `lookalike duplicates` calibrates it)"
            )
        )
    if "integrity" in info:
        lines.append(f"integrity:      {info['integrity']}")
    return lines


def _folder_lines(folders: Sequence[str]) -> list[str]:
    """The indexed folders, one a line; one indexed on its own inside another is shown
    indented under it (it is no separate root: its images are the outer folder's too)."""
    if not folders:
        return ["folders:        -"]
    lines: list[str] = []
    tops: list[str] = []
    for f in sorted(set(folders)):
        outer = next((t for t in tops if f.startswith(t.rstrip("/") + "/")), None)
        if outer is None:
            tops.append(f)
            lines.append(_safe(f))
        else:
            lines.append(f"  {_safe(f)} (inside {_safe(outer)}, also indexed on its own)")
    return [("folders:        " if i == 0 else " " * 16) + ln for i, ln in enumerate(lines)]


def _clip_lines(clip: dict[str, Any] | None) -> list[str]:
    """A CLIP index's extra lines: searchable by words, and what makes its text side."""
    if not clip:
        return []
    tag = f", tag {clip['tag']}" if clip.get("tag") else ""
    return [
        "space:          clip (search by words: lookalike search --text ...)",
        f"clip model:     {clip['library']} {clip['version']}, {clip['arch']}{tag}",
        f"tokenizer:      {clip['tokenizer']}",
        f"text tower:     {clip['text']}",
    ]
