"""Input normalization shared by training, evaluation and the service.

Percentile scaling maps each image's low percentile to 0 and its high percentile to 1, so 8-bit,
16-bit and unevenly exposed images all reach the network in the same range. Values outside are
not clipped: a single bright nucleus in a large dark field (where the high percentile is still
background) stays brighter than 1 instead of being flattened.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


class PercentileNormalization(BaseModel):
    """Recorded in every checkpoint so the service normalizes exactly as training did."""

    method: str = Field(default="percentile", pattern="^percentile$")
    low: float = Field(default=1.0, ge=0.0, le=100.0)
    high: float = Field(default=99.8, ge=0.0, le=100.0)

    def apply(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        finite = image[np.isfinite(image)]
        if finite.size == 0:
            return np.zeros_like(image)
        low, high = np.percentile(finite, [self.low, self.high])
        if high - low < 1e-6:
            high = float(finite.max())
        scale = high - low if high - low >= 1e-6 else 1.0
        out = (image - low) / scale
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
