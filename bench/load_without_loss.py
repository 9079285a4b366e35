"""Load without loss: ~1000 requests at concurrency 64, mixed image sizes, nothing lost or mixed.

    .venv/bin/python bench/load_without_loss.py --requests 1000 --concurrency 64
    .venv/bin/python bench/load_without_loss.py --requests 640 --concurrency 64 --retry \
        --images ../shared/datasets/dsb2018-fluo-train/images --limit 80

Starts the service (``docker/entrypoint.sh``) as a subprocess, records each distinct image's
answer when sent alone, then fires the load and checks that every response is either a success
equal to that image's answer alone (count and mask) or a deliberate 503 with ``Retry-After``;
with ``--retry`` the clients honour the Retry-After until they get their count, and nothing may
be lost. Prints throughput, latency percentiles, error counts and the server's peak resident
memory (VmHWM). The same
``drive`` function backs the bounded test in ``tests/service/api/test_load.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_training.synthetic import SyntheticConfig, generate_sample  # noqa: E402

SIZES = ((64, 64), (96, 128), (160, 160), (192, 256), (256, 256), (384, 320))


def mixed_images(variants: int = 12) -> list[bytes]:
    """PNG bytes of synthetic nuclei images in a mix of sizes (fixed seeds)."""
    images = []
    for index in range(variants):
        height, width = SIZES[index % len(SIZES)]
        config = SyntheticConfig(
            height=height, width=width, max_cells=max(1, height * width // 1500)
        )
        sample = generate_sample(500 + index, config)
        buffer = io.BytesIO()
        Image.fromarray(sample.image).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


@dataclass
class LoadReport:
    requests: int
    seconds: float
    statuses: Counter = field(default_factory=Counter)  # every answer, retries included
    mismatches: list[str] = field(default_factory=list)
    bad_503: int = 0  # 503s without Retry-After
    reconnects: int = 0  # requests sent again after the server closed an idle connection
    lost: int = 0  # requests whose last answer was not a 200
    admitted_latency: list[float] = field(default_factory=list)  # seconds, of the 200s
    refused_latency: list[float] = field(default_factory=list)  # seconds, of the 503s

    @property
    def throughput(self) -> float:
        return len(self.admitted_latency) / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def answer(response: httpx.Response) -> tuple[int, str]:
    result = response.json()["results"][0]
    return result["count"], result["mask_png_base64"]


async def drive(
    url: str,
    images: list[bytes],
    requests: int,
    concurrency: int,
    headers: dict | None = None,
    retry: bool = False,
    max_attempts: int = 50,
) -> LoadReport:
    """Send ``requests`` uploads, ``concurrency`` at a time. With ``retry`` a client that gets a
    503 waits its Retry-After (outside the concurrency gate, as a real client would) and sends
    again, up to ``max_attempts`` times."""
    params = {"include_mask": "true"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=300, limits=limits, headers=headers or {}
    ) as http:
        alone = []
        for data in images:
            response = await http.post("/count", files={"files": ("a.png", data)}, params=params)
            response.raise_for_status()
            alone.append(answer(response))
        report = LoadReport(requests=requests, seconds=0.0)
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            which = index % len(images)
            for _ in range(max_attempts):
                async with gate:
                    sent = time.perf_counter()
                    try:
                        response = await http.post(
                            "/count",
                            files={"files": (f"img{which}.png", images[which])},
                            params=params,
                        )
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        # A kept-alive connection the server closed as it was reused (idle past
                        # its keep-alive while this client waited out a Retry-After): the
                        # request never reached the service; send it again on a fresh one.
                        report.reconnects += 1
                        continue
                    took = time.perf_counter() - sent
                report.statuses[response.status_code] += 1
                if response.status_code == 200:
                    report.admitted_latency.append(took)
                    if answer(response) != alone[which]:
                        report.mismatches.append(f"request {index} (image {which})")
                    return
                if response.status_code != 503:
                    break
                report.refused_latency.append(took)
                if "retry-after" not in response.headers:
                    report.bad_503 += 1
                    break
                if not retry:
                    return
                await asyncio.sleep(float(response.headers["retry-after"]))
            report.lost += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        report.seconds = time.perf_counter() - started
    return report


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_images(folder: Path, limit: int) -> list[bytes]:
    """The bytes of up to ``limit`` image files of a folder (real microscope images, any size
    and bit depth the service reads), in name order."""
    suffixes = {".png", ".tif", ".tiff", ".jpg", ".jpeg"}
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    return [path.read_bytes() for path in paths[:limit]]


def main() -> None:
    from bench.service_throughput import base_env, running_server, service_command

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "weights" / "unet32.safetensors")
    parser.add_argument("--images", type=Path, help="a folder of real images (default: synthetic)")
    parser.add_argument("--limit", type=int, default=80, help="images taken from --images")
    parser.add_argument("--retry", action="store_true", help="clients honour Retry-After")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)"
    )
    args = parser.parse_args()
    images = folder_images(args.images, args.limit) if args.images else mixed_images()
    env = base_env(args.checkpoint)
    env.update(item.split("=", 1) for item in args.env)
    with running_server("service", service_command(), env, Path("/tmp"), 300.0) as server:
        report = asyncio.run(
            drive(server.url, images, args.requests, args.concurrency, retry=args.retry)
        )
        peak = peak_rss_mib(server.pid)
    source = (
        f"{len(images)} images from {args.images}"
        if args.images
        else (f"{len(images)} synthetic images of sizes {sorted(set(SIZES))}")
    )
    print(
        f"# checkpoint {args.checkpoint.name}, {args.requests} requests at concurrency "
        f"{args.concurrency}, {source}, retries on 503: {'yes' if args.retry else 'no'}"
    )
    print(
        "| requests | lost | 200 | 503 | 504 | other | mismatches | 503 without Retry-After | "
        "p50 / p99 admitted (s) | p50 / max 503 (s) | images/s | seconds | peak RSS (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    other = sum(n for status, n in report.statuses.items() if status not in (200, 503, 504))
    admitted, refused = report.admitted_latency, report.refused_latency
    print(
        f"| {report.requests} | {report.lost} | {report.statuses[200]} | "
        f"{report.statuses[503]} | {report.statuses[504]} | {other} | "
        f"{len(report.mismatches)} | {report.bad_503} | "
        f"{percentile(admitted, 50):.2f} / {percentile(admitted, 99):.2f} | "
        f"{percentile(refused, 50):.2f} / {max(refused, default=float('nan')):.2f} | "
        f"{report.throughput:.1f} | {report.seconds:.1f} | {peak:.0f} |"
    )
    print(f"\nresent after a closed keep-alive connection: {report.reconnects}")


if __name__ == "__main__":
    main()
