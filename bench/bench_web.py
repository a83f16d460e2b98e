"""Web UI latency and load on a 100k-image index (issue 11). One JSON object out.

    nice .venv/bin/python bench/bench_web.py                      # 100k x 2048, 20 clients, 60 s
    nice .venv/bin/python bench/bench_web.py --n 20000 --seconds 20 --no-browser   # quick

What it does, all on loopback:

1. An index of ``--n`` random unit vectors (``add_embeddings``) whose paths are symbolic
   hard links to ``--photos`` real photos (the sample photos of the ``offline`` extra, as JPEGs),
   so thumbnails and files are real. The photo folder is recorded as indexed and the ANN is
   built, as ``lookalike index`` does from 100k images (both through private calls: the
   public way needs 100k real images embedded).
2. ``lookalike serve`` in a subprocess (``--model resnet50`` with random weights written to a
   file, so uploads embed with ResNet50 on the CPU, 2048-d like the index).
3. ``GET /api/similar/{id}?k=10``: 300 sequential requests on one keep-alive connection;
   server-side time from the ``Server-Timing`` header, client time beside it.
4. Upload queries (``POST /api/search``), warm: distinct photos, after the model is loaded.
5. ``--clients`` threads for ``--seconds``: similar (most), gallery pages, thumbnails; every
   answer checked (status, ranks, sorted scores, query not in its results), while another
   process adds vectors to the same DB (``--no-writer`` to skip). The server's RSS is
   sampled every second.
6. In chromium (Playwright, ``/usr/bin/chromium``): time from opening a result URL to 10
   result tiles with their thumbnails drawn; the first open of each URL (thumbnails made
   on request) and again in a fresh browser (thumbnails cached on the server).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from _common import ROOT  # noqa: F401  (puts tests/ on sys.path for helpers)
from helpers import save_random_model, start_server, stop_server

CHROMIUM = "/usr/bin/chromium"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, round(q * (len(s) - 1)))], 2)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 0.5),
        "p95": pct(values, 0.95),
        "max": round(max(values), 2) if values else float("nan"),
    }


# ------------------------------------------------------------------------------ the index


def write_photos(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    from lookalike.demo.samples import load_originals

    folder.mkdir(parents=True, exist_ok=True)
    originals = list(load_originals().values())
    out = []
    for i in range(count):
        im = originals[i % len(originals)]
        if i >= len(originals):  # more photos than samples: mirrored / rotated variants
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(90 * (i // len(originals)))
        path = folder / f"photo{i:03d}.jpg"
        im.convert("RGB").save(path, quality=88)
        out.append(path)
    return out


def build_index(root: Path, n: int, dim: int, photos: int) -> Path:
    from lookalike import Index

    real = write_photos(root / "real", photos)
    folder = root / "images"
    folder.mkdir()
    paths = []
    for i in range(n):
        link = folder / f"img{i:06d}.jpg"
        os.link(real[i % len(real)], link)  # distinct paths (the index resolves symlinks)
        paths.append(str(link))
    # Record the folder as indexed (add_embeddings does not), so its files are servable.
    db = root / "bench.db"
    rng = np.random.default_rng(0)
    with Index.open(db, ann="auto") as idx:
        for start in range(0, n, 20_000):
            part = paths[start : start + 20_000]
            idx.add_embeddings(part, rng.standard_normal((len(part), dim), dtype=np.float32))
        idx._store.add_folders([os.fsencode(folder)])
        idx._vectors.vector_search().build_ann()  # as `lookalike index` does at the end of a run
    return db


def resnet50_weights(path: Path) -> Path:
    return save_random_model(path, "resnet50", seed=0)


# ------------------------------------------------------------------------------ the server


class Server:
    def __init__(self, db: Path, weights: Path, env: dict[str, str]) -> None:
        args = ["--db", str(db), "--model", "resnet50", "--weights", str(weights)]
        self.proc, self.url = start_server(args, env, wait=120)
        parts = urllib.parse.urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = urllib.parse.parse_qs(parts.query)["token"][0]

    def connection(self, timeout: float = 120) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get(self, conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes, float]:
        sep = "&" if "?" in path else "?"
        conn.request("GET", f"{path}{sep}token={self.token}")
        r = conn.getresponse()
        body = r.read()
        return r.status, body, server_ms(r)

    def upload(self, conn: http.client.HTTPConnection, data: bytes) -> tuple[int, bytes, float]:
        boundary = "benchboundary"
        body = (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        conn.request("POST", f"/api/search?k=10&token={self.token}", body, headers)
        r = conn.getresponse()
        out = r.read()
        return r.status, out, server_ms(r)

    def stop(self) -> int:
        try:
            return stop_server(self.proc, timeout=30)[0]
        except subprocess.TimeoutExpired:
            return self.proc.returncode


def server_ms(response: http.client.HTTPResponse) -> float:
    timing = response.getheader("server-timing") or ""
    for part in timing.split(";"):
        if part.startswith("dur="):
            return float(part[4:])
    return float("nan")


def check_results(body: bytes, query_id: int | None = None) -> bool:
    results = json.loads(body)["results"]
    scores = [r["score"] for r in results]
    return (
        len(results) == 10
        and [r["rank"] for r in results] == list(range(1, 11))
        and scores == sorted(scores, reverse=True)
        and all(r["id"] is not None for r in results)
        and (query_id is None or query_id not in [r["id"] for r in results])
    )


# ------------------------------------------------------------------------------ measurements


def similar_latency(server: Server, n: int, requests: int = 300) -> dict[str, object]:
    conn = server.connection()
    rng = random.Random(1)
    for _ in range(20):  # warm-up: caches, ANN loaded
        server.get(conn, f"/api/similar/{rng.randint(1, n)}?k=10")
    srv, cli, bad = [], [], 0
    for _ in range(requests):
        image_id = rng.randint(1, n)
        t = time.perf_counter()
        status, body, ms = server.get(conn, f"/api/similar/{image_id}?k=10")
        cli.append((time.perf_counter() - t) * 1000)
        srv.append(ms)
        bad += status != 200 or not check_results(body, image_id)
    conn.close()
    return {"server_ms": summary(srv), "client_ms": summary(cli), "bad": bad}


def engine_latency(db: Path, n: int, requests: int = 300) -> dict[str, object]:
    """The same queries straight on ``Index.similar_to_id`` in this process: the engine's
    share of the server-side time (same machine, same moment, same ids)."""
    from lookalike import Index

    rng = random.Random(1)
    times = []
    with Index.open(db) as idx:
        for _ in range(20):
            idx.similar_to_id(rng.randint(1, n), 10)
        for _ in range(requests):
            image_id = rng.randint(1, n)
            t = time.perf_counter()
            idx.similar_to_id(image_id, 10)
            times.append((time.perf_counter() - t) * 1000)
    return summary(times)


def upload_latency(server: Server, photos: list[Path], count: int = 20) -> dict[str, object]:
    from PIL import Image

    conn = server.connection()
    srv, cli, bad = [], [], 0
    for i in range(count):
        im = Image.open(photos[(i + 1) % len(photos)])
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=70 + i)  # distinct bytes: never the upload cache
        t = time.perf_counter()
        status, body, ms = server.upload(conn, buf.getvalue())
        cli.append((time.perf_counter() - t) * 1000)
        srv.append(ms)
        bad += status != 200 or not check_results(body)
    conn.close()
    return {
        "server_ms": summary(srv),
        "client_ms": summary(cli),
        "bad": bad,
    }


def writer(
    db: Path, dim: int, folder: Path, photo: Path, stop: threading.Event, added: list[int]
) -> None:
    """Another process adding vectors to the DB while the server answers."""
    code = (
        "import os, sys, numpy as np\n"
        "from lookalike import Index\n"
        "rng = np.random.default_rng(7)\n"
        f"with Index.open({str(db)!r}) as idx:\n"
        "    i = 0\n"
        "    while True:\n"
        "        line = sys.stdin.readline()\n"
        "        if not line.strip():\n"
        "            break\n"
        f"        v = rng.standard_normal((100, {dim}), dtype=np.float32)\n"
        f"        paths = [f'{folder}/written{{i}}_{{j}}.jpg' for j in range(100)]\n"
        "        for p in paths:\n"
        f"            os.link({str(photo)!r}, p)  # real files: thumbnails work\n"
        "        idx.add_embeddings(paths, v)\n"
        "        i += 1\n"
        "        print(i, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    while not stop.is_set():
        proc.stdin.write("go\n")
        proc.stdin.flush()
        proc.stdout.readline()
        added[0] += 100
        stop.wait(1.0)
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=60)


def load(server: Server, n: int, clients: int, seconds: float, db: Path, dim: int, write: bool):
    import psutil

    stop = threading.Event()
    counts = {"requests": 0, "errors": 0, "bad_results": 0}
    lock = threading.Lock()
    latencies: list[float] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = server.connection()
        i = 0
        while not stop.is_set():
            i += 1
            image_id = rng.randint(1, n)
            if i % 10 == 0:
                path, check = f"/thumb/{image_id}", False
            elif i % 5 == 0:
                path, check = f"/api/images?offset={rng.randint(0, n - 60)}&limit=60", False
            else:
                path, check = f"/api/similar/{image_id}?k=10", True
            t = time.perf_counter()
            try:
                status, body, _ = server.get(conn, path)
            except (OSError, http.client.HTTPException):
                status, body = -1, b""
                conn.close()
                conn = server.connection()
            elapsed = (time.perf_counter() - t) * 1000
            ok_result = status != 200 or not check or check_results(body, image_id)
            with lock:
                counts["requests"] += 1
                counts["errors"] += status != 200
                counts["bad_results"] += not ok_result
                latencies.append(elapsed)
        conn.close()

    proc = psutil.Process(server.proc.pid)
    rss: list[float] = []
    added = [0]
    threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
    if write:
        folder, photo = db.parent / "images", next((db.parent / "real").glob("*.jpg"))
        threads.append(threading.Thread(target=writer, args=(db, dim, folder, photo, stop, added)))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    while time.perf_counter() - t0 < seconds:
        rss.append(proc.memory_info().rss / 2**20)
        time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    head, tail = rss[2:7], rss[-5:]
    return {
        **counts,
        "seconds": round(wall, 1),
        "requests_per_second": round(counts["requests"] / wall, 1),
        "client_ms": summary(latencies),
        "rss_mb_start": round(statistics.mean(head), 1) if head else None,
        "rss_mb_end": round(statistics.mean(tail), 1) if tail else None,
        "rss_mb_max": round(max(rss), 1) if rss else None,
        "vectors_written_meanwhile": added[0],
    }


def browser_first_results(server: Server, n: int, runs: int = 5) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    rng = random.Random(3)
    ids = [rng.randint(1, n) for _ in range(runs)]
    script = (
        "() => { const t = document.querySelectorAll('#view .results [data-rank] img');"
        " return t.length === 10 && [...t].every(i => i.complete && i.naturalWidth > 0); }"
    )
    out: dict[str, list[float]] = {"first_open_ms": [], "thumbnails_cached_ms": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        for key in out:
            for image_id in ids:
                context = browser.new_context()  # an empty browser cache each time
                page = context.new_page()
                url = f"{server.url}&q=id%3A{image_id}"
                t = time.perf_counter()
                page.goto(url)
                page.wait_for_function(script, timeout=60_000, polling=10)
                out[key].append((time.perf_counter() - t) * 1000)
                context.close()
        browser.close()
    return {key: summary(values) for key, values in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--no-writer", action="store_true")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-web-", dir=args.dir))
    env = dict(os.environ, LOOKALIKE_CACHE=os.environ.get("LOOKALIKE_CACHE", str(root / "mc")))
    result: dict[str, object] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "n": args.n,
        "dim": args.dim,
    }
    try:
        t = time.perf_counter()
        db = build_index(root, args.n, args.dim, args.photos)
        result["build_s"] = round(time.perf_counter() - t, 1)
        weights = resnet50_weights(root / "resnet50.safetensors")
        server = Server(db, weights, env)
        try:
            photos = sorted((root / "real").glob("*.jpg"))
            # The server loads the model in the background; the first upload waits for it
            # (a first run also compiles it). Measure only once it is loaded.
            t = time.perf_counter()
            status, _, _ = server.upload(server.connection(900), photos[0].read_bytes())
            result["first_upload_s"] = round(time.perf_counter() - t, 1)
            result["first_upload_status"] = status
            result["similar"] = similar_latency(server, args.n)
            result["similar_engine_ms"] = engine_latency(db, args.n)
            result["similar_again"] = similar_latency(server, args.n)  # load drift check
            result["upload"] = upload_latency(server, photos)
            result["load"] = load(
                server, args.n, args.clients, args.seconds, db, args.dim, not args.no_writer
            )
            if not args.no_browser and os.path.exists(CHROMIUM):
                result["browser"] = browser_first_results(server, args.n)
        finally:
            result["server_exit"] = server.stop()
    finally:
        result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        shutil.rmtree(root, ignore_errors=True)
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
