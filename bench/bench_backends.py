#!/usr/bin/env python3
"""ResNet50 embedding throughput per CPU inference backend, against the bf16 matmul ceiling.

    python bench/bench_backends.py                 # torch eager/jit/oneDNN-fusion, OpenVINO
    python bench/bench_backends.py --compile       # + torch.compile (inductor, ~40 s compile)
    python bench/bench_backends.py --rounds 5 --seconds 4

Every backend goes from (n, 224, 224, 3) uint8 pixels to pooled 2048-d vectors, as the
embedder does. The machine is shared, so backends run interleaved: each round measures the
bf16 matmul ceiling (2048^3, torch) and then every backend for ``--seconds``; the report
gives each backend's best round as images/s and as a ratio to that round's ceiling
(ceiling = FLOP/s / 8.2 GFLOP per image). Fidelity: the minimum cosine per image against
fp32 eager torch on the decoded corpus, and how many of each image's top-10 neighbours
agree with fp32's. The weights are random but "trained-looking" (every residual branch on,
batch-norm statistics measured on the corpus), so outputs are not dominated by skips.
One-time costs (trace, convert, compile, save, load) in seconds; ``cold_load_s`` is a fresh
process importing the runtime, loading the saved model and embedding one image.
Decode cost: Pillow decode + resize per corpus JPEG, CPU ms, single process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import RESNET50_GFLOP, corpus, matmul_ceiling

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from lookalike.decode import decode_path  # noqa: E402
from lookalike.embed.pooling import PooledModel  # noqa: E402
from lookalike.setup import Preprocess  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
Run = Callable[[np.ndarray], np.ndarray]


def trained_looking_resnet50(pixels: np.ndarray) -> torch.nn.Module:
    """Random ResNet50, all residual branches on, batch-norm statistics from ``pixels``."""
    import timm

    torch.manual_seed(50)
    model = timm.create_model("resnet50", pretrained=False, num_classes=0, zero_init_last=False)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        model.train()(normalise(pixels[:32], torch.float32))
    return model.eval().requires_grad_(False)


def normalise(pixels: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x = (t / 255 - mean) / std
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------ torch


def torch_backend(model: torch.nn.Module, mode: str, precision: str) -> tuple[Run, dict]:
    """``mode``: eager, jit (trace+freeze), onednn (jit + oneDNN graph fusion), compile."""
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    net = PooledModel(model, "avg", "NCHW").eval()
    net.to(dtype).to(memory_format=torch.channels_last)
    cost: dict = {}
    example = normalise(np.zeros((2, 224, 224, 3), np.uint8), dtype)
    t = time.perf_counter()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        if mode in ("jit", "onednn"):
            torch.jit.enable_onednn_fusion(mode == "onednn")
            net = torch.jit.freeze(torch.jit.trace(net, example, check_trace=False))
            for _ in range(2):  # profiling runs
                net(example)
            cost["trace_freeze_s"] = time.perf_counter() - t
            with tempfile.TemporaryDirectory() as tmp:
                p = os.path.join(tmp, "m.pt")
                t = time.perf_counter()
                torch.jit.save(net, p)
                cost["save_s"] = time.perf_counter() - t
                cost["file_mb"] = os.path.getsize(p) / 1e6
                cost["cold_load_s"] = cold_load_torch(p, precision)
        elif mode == "compile":
            import torch._inductor.config as inductor

            inductor.freezing = True
            net = torch.compile(net)
            net(example)
            cost["compile_s"] = time.perf_counter() - t

    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(normalise(pixels, dtype)).float().numpy()

    return run, cost


def cold_load_torch(path: str, precision: str) -> float:
    code = f"""
import time; t = time.perf_counter()
import torch
m = torch.jit.load({path!r})
x = torch.zeros(1, 3, 224, 224, dtype=torch.{"bfloat16" if precision == "bf16" else "float32"})
with torch.inference_mode():
    for _ in range(3): m(x.contiguous(memory_format=torch.channels_last))
print(time.perf_counter() - t)
"""
    return cold(code)


def cold(code: str) -> float:
    """Seconds a fresh Python process reports for ``code`` (its own clock, after start)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    total = time.perf_counter() - t
    return round(float(out.stdout.strip().splitlines()[-1]), 3) if out.stdout else total


# ------------------------------------------------------------------------------ OpenVINO


def ov_model(model: torch.nn.Module, *, nhwc_u8: bool) -> tuple[object, float]:
    """fp32 torch module -> ov.Model with a dynamic batch; optionally uint8 NHWC input with
    the normalisation folded into the graph (then no torch is needed to run it)."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    net = PooledModel(model, "avg", "NCHW").eval().float()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = ov.convert_model(
            net, example_input=torch.zeros(1, 3, 224, 224), input=[([-1, 3, 224, 224], ov.Type.f32)]
        )
    if nhwc_u8:
        ppp = PrePostProcessor(om)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).mean(
            [255 * m for m in MEAN]
        ).scale([255 * s for s in STD])
        om = ppp.build()
    return om, time.perf_counter() - t


def ov_backend(
    om: object,
    *,
    nhwc_u8: bool,
    precision: str,
    hint: str = "LATENCY",
    streams: int | None = None,
    static: int | None = None,
) -> tuple[Run, dict]:
    """Sync inference with one request, or async with one request per stream (sub-batches)."""
    import openvino as ov

    core = ov.Core()
    cfg: dict = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": hint,
        "INFERENCE_NUM_THREADS": 2,
    }
    if streams is not None:
        cfg["NUM_STREAMS"] = streams
    m = om.clone()  # type: ignore[attr-defined]
    if static:
        m.reshape([static, 224, 224, 3] if nhwc_u8 else [static, 3, 224, 224])
    t = time.perf_counter()
    compiled = core.compile_model(m, "CPU", cfg)
    cost = {"compile_s": time.perf_counter() - t}
    nstreams = int(compiled.get_property("NUM_STREAMS"))
    cost["streams"] = nstreams

    def prep(pixels: np.ndarray) -> np.ndarray:
        if nhwc_u8:
            return np.ascontiguousarray(pixels)
        return normalise(pixels, torch.float32).contiguous().numpy()

    if nstreams == 1:
        req = compiled.create_infer_request()

        def run(pixels: np.ndarray) -> np.ndarray:
            return req.infer({0: prep(pixels)})[0].copy()

        return run, cost

    queue = ov.AsyncInferQueue(compiled, nstreams)
    results: dict[int, np.ndarray] = {}
    queue.set_callback(lambda r, i: results.__setitem__(i, r.get_output_tensor(0).data.copy()))

    def run_async(pixels: np.ndarray) -> np.ndarray:
        parts = np.array_split(prep(pixels), nstreams)
        for i, part in enumerate(parts):
            queue.start_async({0: part}, i)
        queue.wait_all()
        return np.concatenate([results.pop(i) for i in range(len(parts))])

    return run_async, cost


def ov_save_load_costs(om: object, precision: str) -> dict:
    import openvino as ov

    cost: dict = {}
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": precision.replace("fp", "f"), "PERFORMANCE_HINT": "LATENCY"}
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "m.xml")
        t = time.perf_counter()
        ov.save_model(om, xml, compress_to_fp16=False)
        cost["save_ir_s"] = time.perf_counter() - t
        cost["ir_mb"] = os.path.getsize(xml.replace(".xml", ".bin")) / 1e6
        t = time.perf_counter()
        compiled = core.compile_model(core.read_model(xml), "CPU", cfg)
        cost["read_compile_s"] = time.perf_counter() - t
        blob = os.path.join(tmp, "m.blob")
        t = time.perf_counter()
        with open(blob, "wb") as f:
            f.write(compiled.export_model())
        cost["export_blob_s"] = time.perf_counter() - t
        t = time.perf_counter()
        with open(blob, "rb") as f:
            core.import_model(f.read(), "CPU", cfg)
        cost["import_blob_s"] = time.perf_counter() - t
        code = """
import time; t = time.perf_counter()
import numpy as np, openvino as ov
core = ov.Core()
c = core.compile_model(core.read_model(%r), "CPU", %r)
c.create_infer_request().infer({0: np.zeros((1, 224, 224, 3), np.uint8)})
print(time.perf_counter() - t)
""" % (xml, cfg)
        cost["cold_load_s"] = cold(code)
    return cost


# ------------------------------------------------------------------------------ measuring


def decode_corpus(folder: Path) -> tuple[np.ndarray, float]:
    """All corpus JPEGs as (n, 224, 224, 3) uint8, and CPU ms per image for decode+resize."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    pre = Preprocess()
    t = time.process_time()
    pixels = np.stack([decode_path(str(p), pre)[0] for p in paths])
    return pixels, 1000 * (time.process_time() - t) / len(paths)


def rate(run: Run, pixels: np.ndarray, batch: int, seconds: float) -> float:
    run(pixels[:batch])  # warm
    n, t = 0, time.perf_counter()
    i = 0
    while time.perf_counter() - t < seconds:
        chunk = pixels[i : i + batch]
        if len(chunk) < batch:
            i, chunk = 0, pixels[:batch]
        run(chunk)
        n += len(chunk)
        i += batch
    return n / (time.perf_counter() - t)


def latency_one(run: Run, pixels: np.ndarray) -> float:
    run(pixels[:1])
    times = []
    for i in range(5):
        t = time.perf_counter()
        run(pixels[i : i + 1])
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def embed_all(run: Run, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    out = np.concatenate([run(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def fidelity(vecs: np.ndarray, ref: np.ndarray) -> dict:
    cos = np.sum(vecs.astype(np.float64) * ref, axis=1)
    k = 10

    def top(v: np.ndarray) -> np.ndarray:
        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]

    a, b = top(vecs), top(ref)
    agree = [len(set(x) & set(y)) for x, y in zip(a, b, strict=True)]
    return {"min_cosine": round(float(cos.min()), 5), "top10_min_agree": int(min(agree))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--compile", action="store_true", help="include torch.compile (slow)")
    ap.add_argument("--only", default="", help="comma-separated backend names to keep")
    args = ap.parse_args()
    torch.set_num_threads(2)
    pixels, decode_ms = decode_corpus(corpus(200))
    model = trained_looking_resnet50(pixels)
    ref_run, _ = torch_backend(model, "eager", "fp32")
    ref = embed_all(ref_run, pixels)

    backends: dict[str, tuple[Run, int, dict]] = {}

    def add(name: str, made: tuple[Run, dict], batch: int, extra: dict | None = None) -> None:
        if args.only and name not in args.only.split(","):
            return
        run, cost = made
        backends[name] = (run, batch, {**cost, **(extra or {})})
        print(f"built {name}: {json.dumps(cost)}", file=sys.stderr, flush=True)

    add("torch_eager_bf16", torch_backend(model, "eager", "bf16"), 32)
    add("torch_jit_bf16", torch_backend(model, "jit", "bf16"), 32)
    add("torch_jit_onednn_fusion_bf16", torch_backend(model, "onednn", "bf16"), 32)
    torch.jit.enable_onednn_fusion(False)
    if args.compile:
        add("torch_compile_bf16", torch_backend(model, "compile", "bf16"), 32)
    try:
        import openvino  # noqa: F401
    except ImportError:
        print("openvino not installed: skipping its backends", file=sys.stderr)
    else:
        om_u8, conv_u8 = ov_model(model, nhwc_u8=True)
        om_f, conv_f = ov_model(model, nhwc_u8=False)
        conv = {"convert_s": round(conv_u8, 2)}
        add("ov_bf16_lat_b16", ov_backend(om_u8, nhwc_u8=True, precision="bf16"), 16, conv)
        add("ov_bf16_lat_b32", ov_backend(om_u8, nhwc_u8=True, precision="bf16"), 32)
        add("ov_bf16_lat_b64", ov_backend(om_u8, nhwc_u8=True, precision="bf16"), 64)
        add("ov_bf16_lat_b8", ov_backend(om_u8, nhwc_u8=True, precision="bf16"), 8)
        add(
            "ov_bf16_lat_b32_static",
            ov_backend(om_u8, nhwc_u8=True, precision="bf16", static=32),
            32,
        )
        add(
            "ov_bf16_nchw_f32in_b32",
            ov_backend(om_f, nhwc_u8=False, precision="bf16"),
            32,
            {"convert_s": round(conv_f, 2)},
        )
        add(
            "ov_bf16_tput_2streams_b32",
            ov_backend(om_u8, nhwc_u8=True, precision="bf16", hint="THROUGHPUT", streams=2),
            32,
        )
        add(
            "ov_bf16_tput_1stream_b32",
            ov_backend(om_u8, nhwc_u8=True, precision="bf16", hint="THROUGHPUT", streams=1),
            32,
        )
        add("ov_fp32_lat_b32", ov_backend(om_u8, nhwc_u8=True, precision="fp32"), 32)
        if "ov_bf16_lat_b32" in backends:
            backends["ov_bf16_lat_b32"][2].update(ov_save_load_costs(om_u8, "bf16"))

    results: dict[str, dict] = {}
    for name, (run, _, cost) in backends.items():
        results[name] = {**fidelity(embed_all(run, pixels), ref), **cost}
        results[name]["one_image_ms"] = round(latency_one(run, pixels), 1)

    ceilings = []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        ceiling = matmul_ceiling("bf16", reps=6) / (RESNET50_GFLOP * 1e9)
        ceilings.append(ceiling)
        order = list(backends.items())
        if r % 2:
            order.reverse()  # neither end of the round is always the same backend
        for name, (run, batch, _) in order:
            ips = rate(run, pixels, batch, args.seconds)
            res = results[name]
            res.setdefault("rounds", []).append([round(ips, 1), round(ips / ceiling, 3)])
        print(f"round {r}: load {load:.2f}, ceiling {ceiling:.1f} img/s", file=sys.stderr)
    for res in results.values():
        best = max(res.pop("rounds"), key=lambda x: x[1])
        res["images_per_second"], res["ratio_to_ceiling"] = best
    speed = {k: v["images_per_second"] for k, v in results.items()}
    report = {
        "ceiling_images_per_second": [round(c, 1) for c in ceilings],
        "decode_cpu_ms_per_image": round(decode_ms, 2),
        "backends": dict(sorted(results.items(), key=lambda kv: -kv[1]["ratio_to_ceiling"])),
        "note": "best round per backend; ratio = img/s / that round's matmul ceiling",
        "fastest": max(speed, key=speed.__getitem__),
    }
    for k, v in report["backends"].items():
        v.update({kk: round(vv, 3) for kk, vv in v.items() if isinstance(vv, float)})
        report["backends"][k] = v
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
