"""What the per-image nucleus size estimate costs on the request path, against a forward pass.

    .venv/bin/python bench/scale_estimate.py [--checkpoint weights/unet32.safetensors]

For a few image sizes: the median time of ``estimate_diameter`` (image statistics: normalized
image in, diameter out), of the network's estimate (``size_model.network_diameter``: its three
probes, one batch of 64x64 windows, plus the statistics it takes as a prior; with a size model
beside the checkpoint), of the resize to the training scale, and of one whole-image forward
pass at native scale in the same run (fp32, eager, all cores), and their ratios. Prints a
markdown table.
"""

from __future__ import annotations

import numpy as np
from model_bench import model_bench  # bench/model_bench.py, beside this script
from timing import median_ms  # bench/timing.py, beside this script

from model_training.inference import predict_probabilities
from model_training.scale import estimate_diameter, resize_plane
from model_training.size_model import SizeModel, network_diameter, size_model_path
from model_training.synthetic import SyntheticConfig, generate_sample

SIZES = ((256, 256), (512, 512), (520, 696), (1104, 1104), (1040, 1388))


def main() -> None:
    args, model, record = model_bench(__doc__.split("\n")[0])
    size_model = SizeModel.load(size_model_path(args.checkpoint))
    print(
        "| image | statistics ms | network estimate ms | resize to 0.25x ms | forward pass ms "
        "| statistics / forward | network / forward |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for height, width in SIZES:
        config = SyntheticConfig(height=height, width=width, max_cells=100)
        image = record.normalization.apply(generate_sample(0, config).image)
        estimate = median_ms(lambda image=image: estimate_diameter(image), args.repeats)
        network = median_ms(
            lambda image=image: network_diameter(model, size_model, image), args.repeats
        )
        resize = median_ms(lambda image=image: resize_plane(image, 0.25), args.repeats)
        forward = median_ms(
            lambda image=image: predict_probabilities(model, image), max(1, args.repeats // 2)
        )
        print(
            f"| {height}x{width} | {estimate:.1f} | {network:.0f} | {resize:.1f} | {forward:.0f} "
            f"| {estimate / forward:.3f} | {network / forward:.3f} |"
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
