"""The exported package passes bioimageio.core's own test: both weight formats reproduce the
test output within the spec's tolerance, and run at every parametrized size and batch."""

from __future__ import annotations

import bioimageio.core
import pytest


# bioimageio.core loads the TorchScript weights, which torch marks deprecated.
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_package_of_shipped_checkpoint_passes_bioimageio_test(exported, no_network, capsys):
    summary = bioimageio.core.test_model(exported.package, devices=["cpu"])
    with capsys.disabled():  # the validator's summary, as `bioimageio test` prints it
        print()
        summary.display()
    failed = [detail.name for detail in summary.details if detail.status == "failed"]
    assert summary.status == "passed", failed
    tested = {detail.name for detail in summary.details if detail.status == "passed"}
    for weights in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({weights})" in tested
    assert no_network == [] and exported.network_attempts == []
