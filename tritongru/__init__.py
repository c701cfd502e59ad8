"""tritongru: a persistent-RNN GRU in Triton, a drop-in replacement for torch.nn.GRU."""

from .functional import gru
from .module import GRU
from .reference import gru_reference

__version__ = "0.1.0"

__all__ = ["GRU", "gru", "gru_reference", "__version__"]
