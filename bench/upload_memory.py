"""Peak memory of the service per upload: what a deployer sizes a container by.

    python bench/upload_memory.py [--sizes 512 1024 2048] [--checkpoint weights/unet32.safetensors]

Each size runs in a fresh process: the real app (uvicorn in a thread, the shipped checkpoint,
no warm-up, one worker, batches of 4 tiles), its resident set once it is ready (idle), then one
``/count`` of a generated 16-bit PNG of that size, and the process's high-water mark
(``ru_maxrss``) after it. The difference is what that upload added at its peak: the decoded
plane, its normalized float32 copy, the tiles, the forward passes (torch's buffers, which
tracemalloc does not see) and the probability map. ``diameter=16`` pins the nucleus size at the
model's own, so the image is not resized; an auto-sized image that is enlarged costs more
(enlarging is capped at 4x and by CELLCOUNT_MAX_PIXELS).

Prints a markdown table; docs/operations.md ("Memory") has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(size: int, checkpoint: str) -> dict[str, float]:
    """In this (fresh) process: idle and peak resident memory around one upload, in MiB."""
    sys.path.insert(0, str(ROOT))
    import io

    import httpx
    from PIL import Image

    from model_training.synthetic import SyntheticConfig, generate_sample
    from service.settings import Settings
    from tests.service.conftest import start_server

    settings = Settings(
        checkpoint=Path(checkpoint),
        warmup=False,
        max_batch_size=4,
        inference_workers=1,
        plan_cache_dir="",
        precision="fp32",
        request_timeout_s=3600,  # a slow machine is measured, not timed out
    )
    live, thread = start_server(settings)
    sample = generate_sample(size, SyntheticConfig(height=size, width=size, bit_depth=16))
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="PNG")
    data = buffer.getvalue()
    with httpx.Client(base_url=live.url, timeout=600) as http:
        small = generate_sample(1, SyntheticConfig(height=128, width=128)).image
        warm = io.BytesIO()
        Image.fromarray(small).save(warm, format="PNG")
        http.post("/count", files={"files": ("warm.png", warm.getvalue())})  # imports, pools
        idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        response = http.post("/count", files={"files": ("a.png", data)}, params={"diameter": 16})
        response.raise_for_status()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    live.server.should_exit = True
    thread.join(timeout=30)
    return {"size": size, "upload_mib": len(data) / 2**20, "idle": idle, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--checkpoint", default=str(ROOT / "weights" / "unet32.safetensors"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.checkpoint)))
        return
    print(f"checkpoint {Path(args.checkpoint).name}, fp32, one worker, batches of 4 tiles\n")
    print("| image | PNG (MiB) | idle RSS (MiB) | peak RSS (MiB) | added by the upload (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--checkpoint", args.checkpoint],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "CELLCOUNT_PLAN_CACHE_DIR": ""},
        )
        row = json.loads(child.stdout.strip().splitlines()[-1])
        added = row["peak"] - row["idle"]
        print(
            f"| {size}x{size} uint16 | {row['upload_mib']:.1f} | {row['idle']:.0f} | "
            f"{row['peak']:.0f} | {added:.0f} |"
        )


if __name__ == "__main__":
    main()
