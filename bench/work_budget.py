"""What the work budget does to a request that asks for an enlargement, and what it costs.

    .venv/bin/python bench/work_budget.py --side 1024 --budgets none,15,4 --delay-ms 0,1500

For each ``INFERENCE_DELAY_MS`` (0: this machine; more: a slower one, through the real engine)
and each ``CELLCOUNT_WORK_BUDGET_S`` (none: no budget), the service (``docker/entrypoint.sh``)
counts a ``--side`` square PNG of nuclei at half the training size, pinned so that it asks for a
2x enlargement (4x the pixels, the pixel cap). One request at native size first lets the
batcher measure the machine as it is (a delay starts after the warm-up measurement). Prints
the request time (median of ``--repeats``), the scale the network saw and the one asked for,
and the count against the truth. A last table times the budget's own step (the bisection over
tile grids) against the forward pass the same machine measured.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from service_throughput import base_env, running_server, service_command  # bench/, beside this
from timing import median_ms

from model_training.checkpoint import load_checkpoint
from model_training.synthetic import SyntheticConfig, generate_sample
from service.serving.admission import Throughput
from service.serving.work_budget import affordable_scale, pass_seconds

ROOT = Path(__file__).resolve().parent.parent
RADIUS_PER_DIAMETER = 0.555  # drawn radius per measured diameter (as the tests draw them)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def field(side: int, diameter: float, seed: int) -> tuple[bytes, int]:
    """A PNG of nuclei of about ``diameter`` px, sparse enough to count, and its true count."""
    radius = diameter * RADIUS_PER_DIAMETER
    cells = int(0.15 * side * side / (np.pi * radius * radius))
    config = SyntheticConfig(
        height=side,
        width=side,
        min_cells=cells,
        max_cells=cells,
        radius_range=(0.8 * radius, 1.2 * radius),
        scale=diameter / 20.0,
    )
    sample = generate_sample(seed, config)
    return png(sample.image), sample.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "weights" / "unet32.safetensors")
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--budgets", default="none,15,4")
    parser.add_argument("--delay-ms", default="0")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _, record = load_checkpoint(args.checkpoint)
    trained = record.nucleus_diameter_px
    native, _ = field(args.side, trained, seed=1)
    small, truth = field(args.side, trained / 2, seed=2)
    print(
        f"# {args.side}x{args.side}, nuclei of {trained / 2:.1f} px pinned (asks for 2x), "
        f"{truth} true; median of {args.repeats}"
    )
    print(
        "| delay ms/tile | budget s | native request s | enlarged request s | scale seen / "
        "asked | counted / true |"
    )
    print("|---:|---:|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory() as logs:
        for delay in args.delay_ms.split(","):
            for budget in args.budgets.split(","):
                env = base_env(args.checkpoint)
                env["CELLCOUNT_INFERENCE_DELAY_MS"] = delay
                env["CELLCOUNT_REQUEST_TIMEOUT_S"] = "600"
                env["CELLCOUNT_WORK_BUDGET_S"] = "1e9" if budget == "none" else budget
                with (
                    running_server(
                        f"budget-{budget}", service_command(), env, Path(logs), 300
                    ) as server,
                    httpx.Client(base_url=server.url, timeout=900) as client,
                ):
                    native_s, enlarged_s, result = [], [], {}
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        answer = client.post("/count", files={"files": ("n.png", native)})
                        answer.raise_for_status()
                        native_s.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        answer = client.post(
                            "/count",
                            files={"files": ("s.png", small)},
                            params={"diameter": trained / 2},
                        )
                        answer.raise_for_status()
                        enlarged_s.append(time.perf_counter() - start)
                        result = answer.json()["results"][0]
                wanted = result["scale_wanted"] or result["scale"]
                print(
                    f"| {delay} | {budget} | {statistics.median(native_s):.2f} | "
                    f"{statistics.median(enlarged_s):.2f} | {result['scale']:.2f} / "
                    f"{wanted:.2f} | {result['count']} / {truth} |",
                    flush=True,
                )
    # The step itself: a bisection of tile grids, against a forward pass of the same upload.
    # A budget that falls between native size and 2x, so that the bisection runs in full.
    throughput = Throughput(seconds_per_pixel=1e-7, workers=2)
    shape = (args.side, args.side)

    def cost(scale: float) -> float:
        return pass_seconds(throughput, shape, scale, 1024, 64)

    budget_s = cost(1.5)
    step_ms = median_ms(lambda: affordable_scale(cost, budget_s, 1.0, 2.0), repeats=200)
    print(
        f"\nbudget step: {step_ms * 1000:.0f} us per request ({args.side}x{args.side})",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
