"""Load without loss: ~1000 requests at concurrency 64, mixed image sizes, nothing lost or mixed.

    .venv/bin/python bench/load_without_loss.py --requests 1000 --concurrency 64

Starts the service (``docker/entrypoint.sh``) as a subprocess, records each distinct image's
answer when sent alone, then fires the load and checks that every response is either a success
equal to that image's answer alone (count and mask) or a deliberate 503 with ``Retry-After``.
Prints throughput, error counts and the server's peak resident memory (VmHWM). The same
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
    statuses: Counter = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    bad_503: int = 0

    @property
    def throughput(self) -> float:
        return self.statuses[200] / self.seconds if self.seconds else 0.0


def answer(response: httpx.Response) -> tuple[int, str]:
    result = response.json()["results"][0]
    return result["count"], result["mask_png_base64"]


async def drive(
    url: str, images: list[bytes], requests: int, concurrency: int, headers: dict | None = None
) -> LoadReport:
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
            async with gate:
                response = await http.post(
                    "/count", files={"files": (f"img{which}.png", images[which])}, params=params
                )
            report.statuses[response.status_code] += 1
            if response.status_code == 200:
                if answer(response) != alone[which]:
                    report.mismatches.append(f"request {index} (image {which})")
            elif response.status_code == 503 and "retry-after" not in response.headers:
                report.bad_503 += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        report.seconds = time.perf_counter() - started
    return report


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    from bench.service_throughput import base_env, running_server, service_command

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "weights" / "unet32.safetensors")
    args = parser.parse_args()
    images = mixed_images()
    log_dir = Path("/tmp")
    with running_server(
        "service", service_command(), base_env(args.checkpoint), log_dir, 300.0
    ) as server:
        report = asyncio.run(drive(server.url, images, args.requests, args.concurrency))
        peak = peak_rss_mib(server.pid)
    ok = report.statuses[200]
    print(
        f"# checkpoint {args.checkpoint.name}, {args.requests} requests at concurrency "
        f"{args.concurrency}, {len(images)} images of sizes {sorted(set(SIZES))}"
    )
    print(
        "| requests | 200 | 503 | other | mismatches | 503 without Retry-After | "
        "images/s (200s) | seconds | server peak RSS (MiB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    other = sum(n for status, n in report.statuses.items() if status not in (200, 503))
    print(
        f"| {report.requests} | {ok} | {report.statuses[503]} | {other} | "
        f"{len(report.mismatches)} | {report.bad_503} | {report.throughput:.1f} | "
        f"{report.seconds:.1f} | {peak:.0f} |"
    )


if __name__ == "__main__":
    main()
