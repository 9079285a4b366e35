"""Peak traced memory and time of decoding each file of the hostile corpus (issue 17).

    python bench/hostile_memory.py

Each case of ``tests/service/bad_inputs.hostile_cases`` (bombs of 2.5 GiB, declared sizes of
10^9, implausible pixel sizes) through ``service.files.decoding.decode_image`` with the service's
default limits, ``tracemalloc`` reset before each: the answer, its peak and its time. The HTTP
path adds the upload's own copies (tests/service/api/test_hostile_files.py bounds the whole request
at 200 MiB). Prints a markdown table.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.files.decoding import decode_image
from service.files.imaging import ImageError
from service.files.planes import PlaneRequest
from service.settings import Settings
from tests.service.bad_inputs import hostile_cases


def main() -> None:
    settings = Settings()
    cases = hostile_cases()
    print("| file | upload (KiB) | answer | peak traced (MiB) | time (ms) |")
    print("| --- | ---: | --- | ---: | ---: |")
    tracemalloc.start()
    for case in cases:
        tracemalloc.reset_peak()
        start = time.perf_counter()
        try:
            decode_image(
                case.data, settings.max_pixels, PlaneRequest(channel=0), settings.max_decoded_bytes
            )
            answer = "200"
        except ImageError as error:
            answer = f"{error.status} {error.code}"
        spent = (time.perf_counter() - start) * 1e3
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        print(
            f"| {case.name} | {len(case.data) / 1024:.0f} | {answer} | {peak:.1f} | {spent:.1f} |"
        )


if __name__ == "__main__":
    main()
