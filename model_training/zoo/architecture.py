"""The network as the package ships it: ``model_training/unet.py`` plus a sigmoid.

The package's output is probabilities, computed in the graph rather than by a post-processing
step, so every consumer (deepImageJ, napari, QuPath) gets the service's probabilities even if it
skips post-processing. ``UNetProbabilities`` subclasses ``UNet`` and adds no parameters, so its
state dict is the checkpoint's, key for key, and ``UNetProbabilities(base_channels=...)``
rebuilds the checkpoint's network. The source file is ``unet.py`` verbatim with the subclass
appended: the package stays in step with the code that trained the weights.
"""

from __future__ import annotations

import inspect

import torch

from model_training import unet
from model_training.unet import UNet

CALLABLE = "UNetProbabilities"
FILE_NAME = "unet.py"

_APPENDIX = f'''

# Appended by cellcount-export (model_training/zoo/architecture.py): the package's network.
class {CALLABLE}(UNet):
    """UNet whose output is the per-pixel nucleus probability (sigmoid of the logit)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().forward(x))
'''


def architecture_source() -> str:
    """Text of the package's architecture file."""
    return inspect.getsource(unet) + _APPENDIX


def package_network_class() -> type[torch.nn.Module]:
    """The appended class, built from the very text the package ships (one definition, so the
    exporter's tracing and test outputs cannot drift from the file consumers load)."""
    namespace: dict[str, object] = {"__name__": "cellcount_package_unet"}
    exec(compile(architecture_source(), FILE_NAME, "exec"), namespace)
    network = namespace[CALLABLE]
    assert isinstance(network, type) and issubclass(network, torch.nn.Module)
    return network


def probabilities_model(model: UNet) -> torch.nn.Module:
    """``model``'s weights in the package's network, in eval mode on the CPU."""
    wrapped = package_network_class()(
        base_channels=model.base_channels, in_channels=model.in_channels
    )
    wrapped.load_state_dict(model.state_dict(), strict=True)
    return wrapped.eval()
