"""Plain-text and JSON views of results. Pure functions: strings in, strings out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..types import Hit, IndexReport


def _safe(text: str) -> str:
    """A path as printable text: undecodable bytes (surrogate escapes) shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def hits_json(query: str, hits: Sequence[Hit]) -> str:
    """The ``search --json`` object: ``{"query": str, "results": [{rank, score, path}]}``."""
    return json.dumps(
        {"query": _safe(query), "results": [{**h.to_dict(), "path": _safe(h.path)} for h in hits]},
        ensure_ascii=False,
    )


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
        "preprocessing:  "
        + (
            f"{pre.get('mode')} to {pre.get('size')}, {pre.get('interpolation')}, "
            f"mean {pre.get('mean')}, std {pre.get('std')}"
            if pre
            else "-"
        ),
        f"dimension:      {info.get('dim') or '-'}",
        f"folders:        {', '.join(_safe(f) for f in info['folders']) or '-'}",
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
    if "integrity" in info:
        lines.append(f"integrity:      {info['integrity']}")
    return lines
