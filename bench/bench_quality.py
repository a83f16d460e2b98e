#!/usr/bin/env python3
"""Retrieval quality of the trained EfficientNet-Lite0 on a Copydays-style copy set.

The set (``lookalike.demo.samples.copy_detection_set``): 21 sample photos from the
scikit-image, scikit-learn and matplotlib wheels, and 19 edited copies of each (crops of
10-80 % of the surface, JPEG quality 3-75, rotations of 10 and 90 degrees, flips, grey,
blur, colour shift, a text overlay, resizes to 25 % and 200 %, pasted into another photo).
Every copy queries the 21 originals. For each pooling (avg, gem, max, flatten = the seed's)
and crop mode (none = the seed's resize, center = the model's eval crop), in fp32 and bf16:

- recall@1: the share of copies whose most similar original is their own;
- muAP: average precision over all (copy, original, score) pairs ranked by score together
  (Copydays' micro AP: one threshold has to work for every query).

The model's feature map is computed once per (crop, precision) and each pooling applied to
it, as the embedder does (``lookalike.embed.pooling.pool_features``). bf16 runs natively
where the device has it (``--device cuda``, or a CPU with AVX512-BF16/AMX); elsewhere
torch's bf16 convolutions are a slow reference path (minutes per batch), so bf16 is
emulated faithfully: weights and every conv/linear input rounded to bf16, products
accumulated in fp32, as oneDNN's and cuDNN's bf16 kernels do.

usage: bench_quality.py [--device cpu|cuda] [--json OUT] [--edits crop50,jpeg3,...]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections import defaultdict

import numpy as np

LITE0 = "tf_efficientnet_lite0.in1k"
POOLS = ("avg", "gem", "max", "flatten")
CROPS = ("none", "center")
BATCH = 32


def micro_ap(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of all pairs ranked together.

    Args:
        scores: (n_copies, n_originals) cosine of each pair.
        positive: same shape, True where the original is the copy's own.
    """
    order = np.argsort(-scores.ravel(), kind="stable")
    hits = positive.ravel()[order]
    ranks = np.flatnonzero(hits) + 1
    precision_at_hits = np.arange(1, len(ranks) + 1) / ranks
    return float(precision_at_hits.sum() / positive.sum())


def build_model(precision: str, device: str, native: bool):
    import timm
    import torch

    from lookalike.embed.shipped import create_shipped

    model = create_shipped(LITE0).eval().to(device)
    if precision == "fp32":
        return model, torch.float32
    if native:
        return model.to(torch.bfloat16), torch.bfloat16
    model = copy.deepcopy(model)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.bfloat16().float())

    def round_input(_module, args):
        return (args[0].bfloat16().float(), *args[1:])

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            m.register_forward_pre_hook(round_input)
    assert timm is not None
    return model, torch.float32


def pixels_for(images, crop: str):
    """RGB images -> (n, H, W, 3) uint8 model input for this crop mode, as the pipeline does."""
    from lookalike.decode.model_input import to_model_input
    from lookalike.embed.timm_embedder import TimmEmbedder  # noqa: F401  (torch ready)
    from lookalike.setup import Preprocess

    # tf_efficientnet_lite0.in1k's pretrained config (timm): 224, bicubic, crop_pct 0.875.
    pre = Preprocess(
        size=(224, 224),
        mode="center" if crop == "center" else "resize",
        crop_pct=0.875,
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    return np.stack([to_model_input(im, pre) for im in images]), pre


def features(model, dtype, pixels: np.ndarray, pre, device: str):
    """(n, H, W, 3) uint8 -> forward_features output, fp32 on the CPU, batch by batch."""
    import torch

    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), BATCH):
            x = torch.from_numpy(pixels[start : start + BATCH]).to(device)
            x = (x.permute(0, 3, 1, 2).float() / 255 - mean) / std
            out.append(model.forward_features(x.to(dtype)).float().cpu())
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--edits", help="comma-separated subset of the edits (default: all 19)")
    args = ap.parse_args()

    import torch

    from lookalike.demo.samples import EDITS, copy_detection_set
    from lookalike.embed.pooling import pool_features
    from lookalike.embed.runtime.device import native_bf16
    from lookalike.embed.timm_embedder import unit_rows

    edits = tuple(args.edits.split(",")) if args.edits else tuple(EDITS)
    t0 = time.perf_counter()
    originals, copies = copy_detection_set(edits=edits)
    names = list(originals)
    own = np.array([names.index(c.original) for c in copies])
    positive = np.zeros((len(copies), len(names)), bool)
    positive[np.arange(len(copies)), own] = True
    images = list(originals.values()) + [c.image for c in copies]
    print(
        f"{len(names)} originals, {len(copies)} copies ({len(edits)} edits) "
        f"built in {time.perf_counter() - t0:.1f} s"
    )

    native = native_bf16(args.device)
    rows, per_edit = [], {}
    prepared = {crop: pixels_for(images, crop) for crop in CROPS}  # same for both precisions
    for precision in ("fp32", "bf16"):
        model, dtype = build_model(precision, args.device, native)
        kind = precision if precision == "fp32" else ("bf16" if native else "bf16 (emulated)")
        for crop in CROPS:
            t = time.perf_counter()
            pixels, pre = prepared[crop]
            feats = features(model, dtype, pixels, pre, args.device)
            seconds = time.perf_counter() - t
            for pool in POOLS:
                vecs = unit_rows(pool_features(model, feats, pool, "NCHW"))
                db, q = vecs[: len(names)], vecs[len(names) :]
                scores = q @ db.T
                top1 = scores.argmax(axis=1)
                recall = float((top1 == own).mean())
                row = {
                    "precision": kind,
                    "crop": crop,
                    "pool": pool,
                    "dim": int(vecs.shape[1]),
                    "recall_at_1": round(recall, 4),
                    "muAP": round(micro_ap(scores, positive), 4),
                    "embed_seconds": round(seconds, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                if precision == "fp32":
                    hits = defaultdict(list)
                    for c, ok in zip(copies, top1 == own, strict=True):
                        hits[c.edit].append(bool(ok))
                    per_edit[f"{crop}/{pool}"] = {
                        e: round(float(np.mean(v)), 3) for e, v in hits.items()
                    }
    print("\n| precision | crop | pool | dim | recall@1 | muAP |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['precision']} | {r['crop']} | {r['pool']} | {r['dim']} | "
            f"{r['recall_at_1']:.3f} | {r['muAP']:.3f} |"
        )
    print("\nrecall@1 per edit (fp32):")
    header = list(per_edit)
    print("| edit | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))
    for e in edits:
        print(f"| {e} | " + " | ".join(f"{per_edit[h][e]:.2f}" for h in header) + " |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; torch threads {torch.get_num_threads()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "per_edit": per_edit, "edits": edits}, f, indent=1)


if __name__ == "__main__":
    main()
