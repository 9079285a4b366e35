"""Service throughput and latency over HTTP, against the bare model and a plain FastAPI server.

    .venv/bin/python bench/service_throughput.py --requests 200 --concurrency 1,8,32

Sections: (a) the bare model in-process, in the inference mode the running service chose (read
from its ``GET /model``), best images/s over batch sizes and worker x thread splits, plus the
single-image latency; (b) the service (``docker/entrypoint.sh``, ``CELLCOUNT_*`` as in this
environment) at each concurrency; (c) the same service with batching off; (d) the plain
one-request-one-forward server of ``bench/plain_server.py`` in the same inference mode; (e) a
mix of image sizes at concurrency 8. Every row carries its ratio to (a); a last table checks the
targets. Requests come from a closed-loop asyncio+httpx client in a separate process, so its CPU
use is measured (and shown) rather than hidden inside the server's; warm-up requests are not
timed. Only one server runs at a time. Quote ratios: the machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from model_training.synthetic import SyntheticConfig, generate_sample
from service.serving.plan import cpu_model

ROOT = Path(__file__).resolve().parent.parent
MIX_SIZES = ((128, 128), (256, 256), (512, 384), (1024, 768))  # width x height
BARE_BATCHES = (1, 2, 4, 8)
MIX_CONCURRENCY = 8


# ---- machine and payloads --------------------------------------------------------------------


def png_payload(seed: int, width: int, height: int) -> bytes:
    """A synthetic BBBC005-style image, PNG-encoded as a client would upload it."""
    sample = generate_sample(seed, SyntheticConfig(height=height, width=width))
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Workload:
    """Distinct PNGs and the fixed order in which every server receives them."""

    name: str
    payloads: list[bytes]
    pixels: list[int]
    order: list[int]


def uniform_workload(size: int, variants: int) -> Workload:
    payloads = [png_payload(1000 + i, size, size) for i in range(variants)]
    return Workload(f"{size}x{size}", payloads, [size * size] * variants, list(range(variants)))


def mix_workload(requests: int, variants: int) -> Workload:
    """25 % of each size, shuffled once with a fixed seed: the same sequence for every server."""
    payloads, pixels = [], []
    for s, (width, height) in enumerate(MIX_SIZES):
        for v in range(variants):
            payloads.append(png_payload(2000 + 100 * s + v, width, height))
            pixels.append(width * height)
    slots = [
        (i % len(MIX_SIZES)) * variants + (i // len(MIX_SIZES)) % variants
        for i in range(max(requests, len(MIX_SIZES)))
    ]
    order = [slots[i] for i in np.random.default_rng(0).permutation(len(slots))]
    name = "mix " + "/".join(f"{w}x{h}" for w, h in MIX_SIZES)
    return Workload(name, payloads, pixels, order)


# ---- load generator (runs in its own process) ------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def response_count(body: dict[str, Any]) -> int:
    return int(body["count"]) if "count" in body else int(body["results"][0]["count"])


CPU_METRICS = ("cellcount_inference_cpu_seconds_total", "cellcount_cpu_pool_cpu_seconds_total")


async def cpu_metrics(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    """The service's own CPU accounting (empty for servers without it, like the plain one)."""
    try:
        response = await client.get(url)
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    values = {}
    for line in response.text.splitlines():
        name, _, value = line.partition(" ")
        if name in CPU_METRICS:
            values[name] = float(value)
    return values


async def _drive(
    url: str,
    workload: Workload,
    concurrency: int,
    warmup: int,
    requests: int,
    server_pid: int,
    as_json: bool = False,
) -> dict[str, Any]:
    encoded = [base64.b64encode(p).decode() for p in workload.payloads] if as_json else []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(600.0)) as client:

        async def phase(total: int) -> tuple[list[float], list[str], dict[int, int], int]:
            latencies: list[float] = []
            errors: list[str] = []
            counts: dict[int, int] = {}
            pixels = 0
            position = iter(range(total))

            async def user() -> None:
                nonlocal pixels
                for i in position:  # shared iterator: request i goes to whichever user is free
                    index = workload.order[i % len(workload.order)]
                    files = {"files": (f"img{index}.png", workload.payloads[index], "image/png")}
                    start = time.perf_counter()
                    try:
                        if as_json:  # the LitServe peer: base64 in JSON (see its docstring)
                            response = await client.post(url, json={"image": encoded[index]})
                        else:
                            response = await client.post(url, files=files)
                        elapsed = time.perf_counter() - start
                        if response.status_code != 200:
                            errors.append(f"{response.status_code} {response.text[:200]}")
                            continue
                        counts[index] = response_count(response.json())
                    except httpx.HTTPError as error:
                        errors.append(f"{type(error).__name__}: {error}")
                        continue
                    latencies.append(elapsed)
                    pixels += workload.pixels[index]

            await asyncio.gather(*(user() for _ in range(min(concurrency, max(total, 1)))))
            return latencies, errors, counts, pixels

        if warmup:
            await phase(warmup)
        metrics_url = url.rsplit("/", 1)[0] + "/metrics"
        before = await cpu_metrics(client, metrics_url)
        server_cpu, client_cpu = process_cpu_seconds(server_pid), time.process_time()
        start = time.perf_counter()
        latencies, errors, counts, pixels = await phase(requests)
        wall = time.perf_counter() - start
        after = await cpu_metrics(client, metrics_url)
        return {
            "cpu_split_s": {key: after[key] - before[key] for key in before.keys() & after.keys()},
            "wall_s": wall,
            "latencies_s": latencies,
            "errors": errors,
            "counts": counts,
            "pixels": pixels,
            "server_cpu_s": process_cpu_seconds(server_pid) - server_cpu,
            "client_cpu_s": time.process_time() - client_cpu,
        }


def run_load(
    url: str,
    workload: Workload,
    concurrency: int,
    warmup: int,
    requests: int,
    server_pid: int,
    as_json: bool = False,
) -> dict[str, Any]:
    """Entry point of the load-generator process."""
    return asyncio.run(_drive(url, workload, concurrency, warmup, requests, server_pid, as_json))


@dataclass
class LoadResult:
    server: str
    workload: str
    concurrency: int
    requests: int
    wall_s: float
    latencies_ms: list[float]
    errors: list[str]
    counts: dict[int, int]
    pixels: int
    server_cpu_s: float
    client_cpu_s: float
    cpu_split_s: dict[str, float]

    @property
    def images_per_s(self) -> float:
        return len(self.latencies_ms) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def mpx_per_s(self) -> float:
        return self.pixels / 1e6 / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def measure(
    pool: Pool,
    server: RunningServer,
    workload: Workload,
    concurrency: int,
    warmup: int,
    requests: int,
    as_json: bool = False,
) -> LoadResult:
    raw = pool.apply(
        run_load,
        (server.url + "/count", workload, concurrency, warmup, requests, server.pid, as_json),
    )
    if raw["errors"]:
        print(
            f"# {server.name} c={concurrency}: {len(raw['errors'])} errors, first: "
            f"{raw['errors'][0]}",
            file=sys.stderr,
        )
    return LoadResult(
        server=server.name,
        workload=workload.name,
        concurrency=concurrency,
        requests=requests,
        wall_s=raw["wall_s"],
        latencies_ms=[s * 1e3 for s in raw["latencies_s"]],
        errors=raw["errors"],
        counts=raw["counts"],
        pixels=raw["pixels"],
        server_cpu_s=raw["server_cpu_s"],
        client_cpu_s=raw["client_cpu_s"],
        cpu_split_s=raw["cpu_split_s"],
    )


# ---- servers as subprocesses -----------------------------------------------------------------


@dataclass
class RunningServer:
    name: str
    url: str
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(checkpoint: Path) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = ROOT / ".venv" / "bin"
    bin_dir = venv_bin if venv_bin.is_dir() else Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["CELLCOUNT_CHECKPOINT"] = str(checkpoint)
    env.setdefault("LOG_LEVEL", "warning")
    env["GRACEFUL_TIMEOUT"] = "5"
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def running_server(
    name: str, command: Sequence[str], env: dict[str, str], log_dir: Path, start_timeout: float
) -> Iterator[RunningServer]:
    """Start, wait for /ready, and always terminate + wait, whatever happens in between."""
    port = free_port()
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
    log_path = log_dir / ("".join(ch if ch.isalnum() else "-" for ch in name) + ".log")
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the server ourselves
        )
    try:
        started = time.monotonic()
        with httpx.Client(timeout=5.0) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode} before it was ready:\n"
                        + log_tail(log_path)
                    )
                try:
                    if client.get(url + "/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - started > start_timeout:
                    raise RuntimeError(f"{name} not ready after {start_timeout:.0f} s")
                time.sleep(0.5)
        print(
            f"# {name} ready in {time.monotonic() - started:.1f} s (log {log_path})",
            file=sys.stderr,
        )
        yield RunningServer(name, url, process.pid)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # A server's own worker processes (LitServe spawns them) may outlive it: the session
        # started for it holds them all.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def service_command() -> list[str]:
    return [str(ROOT / "docker" / "entrypoint.sh")]


def plain_command() -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "plain_server.py")]


def litserve_command() -> list[str] | None:
    """The LitServe peer, where litserve is installed (it is not a project dependency)."""
    import importlib.util

    if importlib.util.find_spec("litserve") is None:
        return None
    return [sys.executable, str(ROOT / "bench" / "litserve_server.py")]


# ---- (a) bare model --------------------------------------------------------------------------


@dataclass
class BareResult:
    rows: list[tuple[int, int, int, float]]  # workers, threads, batch, images/s
    best: tuple[int, int, int, float]
    single_ms: float
    input_size: int


def in_worker_threads(
    engine: Any, batch: np.ndarray, workers: int, rounds: int
) -> list[list[float]]:
    """Seconds of each call, per fresh worker thread: `rounds` timed calls after one warm-up.

    Always off the main thread, as in the service's batcher: on CPU, torch's OpenMP team of the
    main thread behaves differently (on a busy machine its spin-waits cost several times the
    work), so a main-thread timing would not describe what the service's workers get.
    """
    ready = threading.Barrier(workers)
    seconds: list[list[float]] = [[] for _ in range(workers)]

    def work(index: int) -> None:
        engine(batch)  # warm-up: allocator, kernel choice, this thread's OpenMP team
        ready.wait()
        for _ in range(rounds):
            start = time.perf_counter()
            engine(batch)
            seconds[index].append(time.perf_counter() - start)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seconds


def bare_model(
    checkpoint: Path, info: dict[str, Any], size: int, rounds: int, repeats: int, graph: bool
) -> BareResult:
    """The model alone, as the service's workers run it: InferenceEngine, same mode, same
    threads; through the TorchScript graph or eager (``graph``)."""
    import torch

    from model_training.checkpoint import load_checkpoint
    from service.serving.engine import InferenceEngine, available_cores
    from service.serving.tuning import sample_tiles

    device = torch.device(info["device"])
    model, record = load_checkpoint(checkpoint, device)
    cores = available_cores()
    gpu = device.type == "cuda"
    input_size = -(-size // 16) * 16
    tiles = sample_tiles(input_size, record.normalization, max(BARE_BATCHES))
    engine = InferenceEngine(model, device, info["precision"], info["channels_last"])
    if graph:
        engine.use_graph(tiles[:2])
    splits = [(1, None if gpu else cores)]
    if cores >= 2 or gpu:
        splits.append((2, None if gpu else max(1, cores // 2)))
    rows = []
    for workers, threads in splits:
        engine.configure(info["precision"], info["channels_last"], threads)
        for batch in BARE_BATCHES:
            per_worker = in_worker_threads(engine, tiles[:batch], workers, rounds)
            slowest = max(sum(calls) for calls in per_worker)
            rows.append((workers, threads or 0, batch, workers * rounds * batch / slowest))
    best = max(rows, key=lambda row: row[3])
    # Single-image latency: the faster of one thread and all cores (which one wins depends on
    # the model's width), as the service's warm-up also chooses.
    single = []
    for threads in sorted({1, cores}) if not gpu else [None]:
        engine.configure(info["precision"], info["channels_last"], threads)
        engine.solo_threads = threads
        times = in_worker_threads(engine, tiles[:1], 1, repeats)[0]
        single.append(statistics.median(times) * 1e3)
    return BareResult(rows, best, min(single), input_size)


# ---- report ----------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"  # NaN-safe


def load_table(results: list[LoadResult], bare: BareResult, pixel_ratio: bool = False) -> None:
    bare_px = bare.best[3] * bare.input_size**2
    print(
        "| server | concurrency | requests | images/s | Mpx/s | vs bare | p50 ms | p99 ms | errors "
        "| server CPU (cores) | client CPU (cores) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = r.pixels / r.wall_s / bare_px if pixel_ratio else r.images_per_s / bare.best[3]
        print(
            f"| {r.server} | {r.concurrency} | {len(r.latencies_ms)} | {r.images_per_s:.2f} "
            f"| {r.mpx_per_s:.2f} | {ratio:.2f}x | {fmt(r.percentile(50))} "
            f"| {fmt(r.percentile(99))} | {len(r.errors)} | {fmt(r.server_cpu_s / r.wall_s, 2)} "
            f"| {fmt(r.client_cpu_s / r.wall_s, 2)} |"
        )


def cpu_budget_table(results: list[LoadResult], bare: BareResult, cores: int) -> None:
    """CPU milliseconds per image, by where they go, from the service's own accounting.

    The bare model keeps all cores busy with forward passes only; the service must also parse
    HTTP, decode, normalize, label and answer on the same cores, and the load generator runs
    there too. `ceiling` is the throughput these per-image costs would allow with every core
    busy all the time: what the service could reach with perfect scheduling.
    """
    rows = [r for r in results if len(r.cpu_split_s) == len(CPU_METRICS) and r.latencies_ms]
    if not rows:
        return
    print(
        "| concurrency | forward passes | decode/normalize/label (pool) | rest of the server "
        "| load generator | total | ceiling images/s (vs bare) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        n = len(r.latencies_ms)
        forward = r.cpu_split_s[CPU_METRICS[0]] * 1e3 / n
        pool = r.cpu_split_s[CPU_METRICS[1]] * 1e3 / n
        loop = r.server_cpu_s * 1e3 / n - forward - pool
        client = r.client_cpu_s * 1e3 / n
        total = forward + pool + loop + client
        ceiling = cores * 1e3 / total
        print(
            f"| {r.concurrency} | {forward:.1f} | {pool:.1f} | {loop:.1f} | {client:.1f} "
            f"| {total:.1f} | {ceiling:.1f} ({ceiling / bare.best[3]:.2f}x) |"
        )
    print(
        f"\nbare model: {cores * 1e3 / bare.best[3]:.1f} CPU ms per image ({cores} cores busy at "
        f"{bare.best[3]:.1f} images/s). 'forward passes' is the inference threads' own CPU time; "
        "'rest of the server' is the event loop (HTTP, multipart, scheduling) plus the OpenMP "
        "helper threads of a forward pass that ran alone on several threads (c=1)."
    )


def count_agreement(a: LoadResult, b: LoadResult) -> str:
    common = sorted(set(a.counts) & set(b.counts))
    if not common:
        return "no common images"
    diffs = [abs(a.counts[i] - b.counts[i]) for i in common]
    same = sum(d == 0 for d in diffs)
    return f"{same}/{len(common)} images with equal counts, max |diff| {max(diffs)}"


def targets_table(
    service: dict[int, LoadResult],
    plain: dict[int, LoadResult],
    mix: dict[str, LoadResult],
    bare: BareResult,
    max_wait_ms: float,
    bare_eager: BareResult | None = None,
) -> None:
    rows: list[tuple[str, str, str, bool | None]] = []
    baselines = [("bare", bare)] + ([("bare eager", bare_eager)] if bare_eager else [])
    if service:
        top = 32 if 32 in service else max(service)
        for name, baseline in baselines:
            need = 0.85 * baseline.best[3]
            got = service[top].images_per_s
            rows.append(
                (
                    f"service images/s at c={top} >= 0.85 x {name}",
                    f"{got:.2f}",
                    f">= {need:.2f}",
                    got >= need,
                )
            )
    if 1 in service:
        for name, baseline in baselines:
            need = 1.5 * baseline.single_ms + max_wait_ms
            got = service[1].percentile(99)
            rows.append(
                (
                    f"service p99 at c=1 <= 1.5 x {name} single + max_wait_ms",
                    f"{got:.1f} ms",
                    f"<= {need:.1f} ms",
                    got <= need,
                )
            )
    for c, result in sorted(plain.items()):
        if c in service:
            got, ref = service[c].images_per_s, result.images_per_s
            rows.append(
                (f"service >= plain at c={c} (images/s)", f"{got:.2f}", f">= {ref:.2f}", got >= ref)
            )
    if "service" in mix and "plain" in mix:
        got, ref = mix["service"].mpx_per_s, mix["plain"].mpx_per_s
        rows.append(
            (
                f"service >= plain on the mix at c={MIX_CONCURRENCY} (Mpx/s)",
                f"{got:.2f}",
                f">= {ref:.2f}",
                got >= ref,
            )
        )
    print("| target | measured | required | result |")
    print("|---|---:|---:|---|")
    for name, got, need, ok in rows:
        print(f"| {name} | {got} | {need} | {'PASS' if ok else 'FAIL'} |")


# ---- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from service.settings import DEFAULT_CHECKPOINT

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per level")
    parser.add_argument("--warmup", type=int, help="untimed requests per level (default max(4, c))")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--size", type=int, default=256, help="side of the uniform test images")
    parser.add_argument("--variants", type=int, default=8, help="distinct images per size")
    parser.add_argument("--bare-rounds", type=int, default=8, help="calls per worker per config")
    parser.add_argument("--repeats", type=int, default=15, help="single-image latency samples")
    parser.add_argument("--start-timeout", type=float, default=900.0, help="seconds to /ready")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--skip-litserve", action="store_true")
    parser.add_argument(
        "--litserve-workers", default="1,2", help="LitServe worker processes to try (best kept)"
    )
    parser.add_argument("--skip-mix", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.variants, args.bare_rounds, args.repeats = 6, 2, 1, 3
        args.warmup = 1 if args.warmup is None else args.warmup
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.levels or min(args.levels) < 1 or args.requests < 1:
        parser.error("--concurrency needs positive integers and --requests at least 1")
    return args


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the servers' finally blocks run."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    raise_on_sigterm()
    import torch

    from service.serving.engine import available_cores
    from service.serving.tiling import plan_tiles
    from service.settings import Settings

    checkpoint = args.checkpoint.resolve()
    env = base_env(checkpoint)
    max_wait_ms = Settings(checkpoint=checkpoint).max_wait_ms
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"# cpu: {cpu_model()}, {available_cores()} cores available ({os.cpu_count()} logical)")
    print(f"# torch {torch.__version__}, cuda device: {cuda}, python {platform.python_version()}")
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if os.getloadavg()[0] > 0.5 * available_cores():
        print(
            "# WARNING: other processes are using this machine; servers with more runnable "
            "threads take CPU from them, so rows are not comparable (see the CPU columns)"
        )
    print(f"# checkpoint {checkpoint}, {args.requests} timed requests per level\n")

    uniform = uniform_workload(args.size, args.variants)
    mix = None if args.skip_mix else mix_workload(args.requests, args.variants)
    warm = (lambda c: args.warmup) if args.warmup is not None else (lambda c: max(4, c))
    service_rows: dict[int, LoadResult] = {}
    nobatch_rows: dict[int, LoadResult] = {}
    plain_rows: dict[int, LoadResult] = {}
    mix_rows: dict[str, LoadResult] = {}
    litserve_rows: dict[int, dict[int, LoadResult]] = {}

    log_dir = Path(tempfile.mkdtemp(prefix="cellcount-bench-"))
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        with running_server(
            "service", service_command(), env, log_dir, args.start_timeout
        ) as server:
            info = httpx.get(server.url + "/model", timeout=30).json()
            mode = {
                "CELLCOUNT_PRECISION": info["precision"],
                "CELLCOUNT_CHANNELS_LAST": "1" if info["channels_last"] else "0",
                "CELLCOUNT_TORCHSCRIPT": "1" if info.get("torchscript") else "0",
            }
            graph = bool(info.get("torchscript"))
            bare = bare_model(checkpoint, info, args.size, args.bare_rounds, args.repeats, graph)
            # The same model run eagerly: what a plain PyTorch program gets, for reference.
            bare_eager = (
                bare_model(checkpoint, info, args.size, args.bare_rounds, args.repeats, False)
                if graph
                else None
            )
            for c in args.levels:
                service_rows[c] = measure(pool, server, uniform, c, warm(c), args.requests)
            if mix:
                mix_rows["service"] = measure(
                    pool, server, mix, MIX_CONCURRENCY, warm(MIX_CONCURRENCY), args.requests
                )

        nobatch_env = {
            **env,
            **mode,
            "CELLCOUNT_MAX_BATCH_SIZE": "1",
            "CELLCOUNT_INFERENCE_WORKERS": "1",
            "CELLCOUNT_MAX_WAIT_MS": "0",
        }
        with running_server(
            "service, batching off", service_command(), nobatch_env, log_dir, args.start_timeout
        ) as server:
            for c in args.levels:
                nobatch_rows[c] = measure(pool, server, uniform, c, warm(c), args.requests)

        if not args.skip_plain:
            plain_env = {
                **env,
                "PLAIN_PRECISION": info["precision"],
                "PLAIN_CHANNELS_LAST": "1" if info["channels_last"] else "0",
                "PLAIN_DEVICE": "cuda" if info["device"].startswith("cuda") else "cpu",
            }
            with running_server(
                "plain FastAPI", plain_command(), plain_env, log_dir, args.start_timeout
            ) as server:
                for c in args.levels:
                    plain_rows[c] = measure(pool, server, uniform, c, warm(c), args.requests)
                if mix:
                    mix_rows["plain"] = measure(
                        pool, server, mix, MIX_CONCURRENCY, warm(MIX_CONCURRENCY), args.requests
                    )

        litserve = None if args.skip_litserve else litserve_command()
        if litserve is None and not args.skip_litserve:
            print("# litserve is not installed: `pip install litserve` to run the LitServe peer")
        for workers in [int(w) for w in args.litserve_workers.split(",")] if litserve else []:
            lit_env = {
                **env,
                "PLAIN_PRECISION": info["precision"],
                "PLAIN_CHANNELS_LAST": "1" if info["channels_last"] else "0",
                "PLAIN_DEVICE": "cuda" if info["device"].startswith("cuda") else "cpu",
                "LITSERVE_WORKERS": str(workers),
            }
            name = f"LitServe, {workers} worker(s)"
            with running_server(name, litserve, lit_env, log_dir, args.start_timeout) as server:
                litserve_rows[workers] = {
                    c: measure(pool, server, uniform, c, warm(c), args.requests, as_json=True)
                    for c in args.levels
                }

    tiles = plan_tiles(args.size, args.size, info["max_tile_size"], info["tile_margin"]).count
    print(
        f"# device {info['device']}, {info['precision']}"
        f"{' channels_last' if info['channels_last'] else ''}, tile {info['max_tile_size']} "
        f"(margin {info['tile_margin']}); service plan: batch <= {info['max_batch_size']}, "
        f"{info['inference_workers']} worker(s), max_wait_ms {max_wait_ms:g}\n"
    )

    execution = "TorchScript graph" if info.get("torchscript") else "eager"
    print(
        f"## (a) bare model, {bare.input_size}x{bare.input_size} inputs, in-process, "
        f"{execution} (as the service runs it)"
    )
    print("| workers x threads | batch | images/s | ms/image | vs best |")
    print("|---|---:|---:|---:|---:|")
    for workers, threads, batch, rate in bare.rows:
        split = f"{workers} x {threads or '-'}"
        print(f"| {split} | {batch} | {rate:.2f} | {1e3 / rate:.1f} | {rate / bare.best[3]:.2f}x |")
    workers, threads, batch, rate = bare.best
    print(
        f"\nbest: **{rate:.2f} images/s** ({workers} x {threads or '-'} threads, batch {batch}); "
        f"single image (batch 1, best of 1 thread and all threads, median of {args.repeats}): "
        f"**{bare.single_ms:.1f} ms**\n"
    )
    if bare_eager is not None:
        workers, threads, batch, rate = bare_eager.best
        print(
            f"(a') the same model **eager**: best {rate:.2f} images/s ({workers} x "
            f"{threads or '-'} threads, batch {batch}); single image {bare_eager.single_ms:.1f} "
            f"ms. The service's ratios below are against (a).\n"
        )

    print(f"## (b) service over HTTP, {uniform.name} PNGs ({tiles} tile(s) each)")
    load_table(list(service_rows.values()), bare)
    print("\nCPU ms per image, by where it goes (the service's `*_cpu_seconds` metrics):\n")
    cpu_budget_table(list(service_rows.values()), bare, available_cores())
    print(f"\n## (c) service, batching off (batch 1, 1 worker, max_wait_ms 0), {uniform.name}")
    load_table(list(nobatch_rows.values()), bare)
    if plain_rows:
        print(f"\n## (d) plain FastAPI server (bench/plain_server.py), {uniform.name}")
        load_table(list(plain_rows.values()), bare)
    for workers, rows in litserve_rows.items():
        print(f"\n## (d') LitServe (bench/litserve_server.py), {workers} worker(s), {uniform.name}")
        load_table(list(rows.values()), bare)
    if mix_rows:
        print(f"\n## (e) {mix.name} at c={MIX_CONCURRENCY} (vs bare in pixels/s)")
        load_table(list(mix_rows.values()), bare, pixel_ratio=True)

    print("\n## counts")
    for c in args.levels:
        if c in plain_rows:
            print(f"- c={c}, service vs plain: {count_agreement(service_rows[c], plain_rows[c])}")
        print(
            f"- c={c}, service vs batching off: {count_agreement(service_rows[c], nobatch_rows[c])}"
        )
    if len(mix_rows) == 2:
        print(f"- mix, service vs plain: {count_agreement(mix_rows['service'], mix_rows['plain'])}")

    if litserve_rows or plain_rows:
        print("\n## the service against its best peer (same model, same mode)")
        print("| concurrency | service images/s | best peer | its images/s | service / peer |")
        print("|---:|---:|---|---:|---:|")
        for c in args.levels:
            peers = [("plain FastAPI", plain_rows.get(c))] + [
                (f"LitServe x{w}", rows.get(c)) for w, rows in litserve_rows.items()
            ]
            peers = [(name, row) for name, row in peers if row is not None]
            if not peers:
                continue
            name, best = max(peers, key=lambda item: item[1].images_per_s)
            mine = service_rows[c].images_per_s
            print(
                f"| {c} | {mine:.1f} | {name} | {best.images_per_s:.1f} | "
                f"{mine / best.images_per_s:.2f}x |"
            )

    print("\n## targets")
    targets_table(service_rows, plain_rows, mix_rows, bare, max_wait_ms, bare_eager)
    print(f"\n# load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# server logs in {log_dir}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
