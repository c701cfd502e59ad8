"""tritongru: a persistent-RNN GRU in Triton, a drop-in replacement for torch.nn.GRU."""

from .errors import PlanError
from .export import onnx_translations
from .functional import gru
from .kernels.stalls import StallError, check_stalls
from .module import GRU
from .reference import gru_reference

__version__ = "0.1.0"

__all__ = ["GRU", "PlanError", "StallError", "check_stalls", "gru", "gru_reference", "onnx_translations", "__version__"]
