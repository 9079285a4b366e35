"""How close a bioimage.io consumer comes to the service's probabilities and counts.

    .venv/bin/python bench/zoo_consumer_agreement.py dist/unet16.bioimageio.zip

A consumer runs the package through bioimageio.core (as napari users would) on synthetic images
whose sides are not multiples of 16, in two ways: the image padded by the user to a multiple of
16 (reflect, bottom/right, as ``model_training.inference`` pads) and cropped back; and
bioimageio.core's own tiling (``blocksize_parameter``), which pads and tiles by the halo. The
reference is the whole-image pass of ``model_training.inference`` with the checkpoint. Prints
the largest and mean probability difference and both counts (threshold and minimum area of the
checkpoint, plain 8-connected components) per image.
"""

from __future__ import annotations

import argparse

import numpy as np
from bioimageio.core import Tensor, predict

from model_training.checkpoint import load_checkpoint
from model_training.counting import label_cells
from model_training.inference import pad_to_multiple, predict_probabilities
from model_training.synthetic import SyntheticConfig, generate_sample

AXES = ("batch", "channel", "y", "x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--checkpoint", default="weights/unet16.safetensors")
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    model, record = load_checkpoint(args.checkpoint)

    def count(probabilities: np.ndarray) -> int:
        return int(label_cells(probabilities, record.threshold, record.min_area).max(initial=0))

    print("image | way | max |dp| | mean |dp| | count (service) | count (consumer)")
    for seed in range(args.images):
        config = SyntheticConfig(height=250 + 10 * seed, width=300 - 7 * seed, bit_depth=16)
        image = generate_sample(1000 + seed, config).image
        height, width = image.shape
        reference = predict_probabilities(model, record.normalization.apply(image))
        padded = pad_to_multiple(image)[None, None]
        ways = {
            "padded by the user": predict(model=args.package, inputs=padded),
            "bioimageio.core tiling": predict(
                model=args.package,
                inputs=Tensor(image[None, None], dims=AXES),
                blocksize_parameter=10,
            ),
        }
        for way, sample in ways.items():
            output = sample.members["probability"].data.values[0, 0, :height, :width]
            difference = np.abs(output - reference)
            print(
                f"{height}x{width} | {way} | {difference.max():.3f} | {difference.mean():.5f} | "
                f"{count(reference)} | {count(output)}"
            )


if __name__ == "__main__":
    main()
