#!/bin/sh
# The one start command, used by `make serve` and by the Docker image.
# Settings: CELLCOUNT_* (see service/settings.py); HOST and PORT for the listener.
set -eu
exec python -m service.serve "$@"
