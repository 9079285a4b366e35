from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_training.synthetic import SyntheticConfig, generate_sample


def write_labelled_folder(root: Path, n_images: int, size: int = 64, bit_depth: int = 16) -> Path:
    """A labelled folder in the layout users bring (images/ + masks/), from the generator."""
    config = SyntheticConfig(height=size, width=size, min_cells=1, max_cells=6, bit_depth=bit_depth)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index in range(n_images):
        sample = generate_sample(100 + index, config)
        Image.fromarray(sample.image).save(root / "images" / f"img{index:02d}.png")
        Image.fromarray(sample.labels.astype(np.uint16)).save(
            root / "masks" / f"img{index:02d}.png"
        )
    return root


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    return write_labelled_folder(tmp_path / "data", 10)
