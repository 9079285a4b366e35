#!/bin/sh
# The one start command, used by `make serve` and by the Docker image.
# Settings: CELLCOUNT_* (see service/settings.py); HOST and PORT for the listener.
set -eu
# Idle OpenMP threads of one inference worker must not spin on the cores another worker is
# using (measured: +8 % throughput at 32 concurrent requests, lower p99 at 1; docs/benchmarks.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec python -m service.serve "$@"
