"""What cutting clumps (``counting.split_clumps``) adds to the request path, against a forward pass.

    .venv/bin/python bench/clump_split.py [--checkpoint weights/unet32.safetensors]

For generated images of a few sizes and kinds (sparse BBBC005-style, densely packed, heavy
defocus: the last two are where clumps are cut): one forward pass at native scale, then the
median time of turning its map into cells (``probabilities_to_cells``, as served) with and
without the clump step, the number of cells each way, and the step's cost as a share of the
forward pass measured in the same run. Prints a markdown table.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from model_bench import model_bench  # bench/model_bench.py, beside this script
from timing import median_ms  # bench/timing.py, beside this script

from model_training.inference import predict_probabilities, probabilities_to_cells
from model_training.scale import ScalePlan
from model_training.size_cases import SIZE_CASES
from model_training.synthetic import SyntheticConfig, generate_sample

KINDS = {
    "sparse": SyntheticConfig(max_cells=100),
    "dense": SyntheticConfig(dense=True),
    "defocus": SIZE_CASES["defocus"],
}
SIZES = ((512, 512), (1040, 1388))


def main() -> None:
    args, model, record = model_bench(__doc__.split("\n")[0])
    plan = ScalePlan(None, "native", 1.0)
    print(
        "| image | forward ms | cells ms, no clump step | cells ms, served | clump step / forward "
        "| cells without / with |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind, config in KINDS.items():
        for height, width in SIZES:
            sample = generate_sample(0, replace(config, height=height, width=width))
            image = record.normalization.apply(sample.image)
            forward = median_ms(
                lambda image=image: predict_probabilities(model, image), max(1, args.repeats // 2)
            )
            probabilities = predict_probabilities(model, image)

            def cells(clumps: bool, probabilities: np.ndarray = probabilities) -> int:
                labelled = probabilities_to_cells(
                    probabilities,
                    plan,
                    record,
                    probabilities.shape,
                    record.threshold,
                    record.min_area,
                    split_clumps=clumps,
                )
                return int(labelled.labels.max())

            without = median_ms(lambda: cells(False), args.repeats)
            served = median_ms(lambda: cells(True), args.repeats)
            print(
                f"| {kind} {height}x{width} | {forward:.0f} | {without:.1f} | {served:.1f} "
                f"| {(served - without) / forward:.3f} | {cells(False)} / {cells(True)} |"
            )


if __name__ == "__main__":
    main()
