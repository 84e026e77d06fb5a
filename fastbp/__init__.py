"""fastbp: Nielsen's backpropagation (Neural Networks and Deep Learning, ch. 2) as fast Numba kernels."""
import os as _os

# Numba's OpenMP pool starts a parallel region in microseconds; its fallback work queue takes hundreds, which
# would dominate small mini-batches. Prefer OpenMP unless the user chose a layer.
if "NUMBA_THREADING_LAYER" not in _os.environ:
    import numba as _numba
    _numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

from .codegen import cache_follows_every_kernel_source as _cache_follows_every_kernel_source  # noqa: E402
from .codegen import prefer_512_bit_vectors as _prefer_512_bit_vectors  # noqa: E402

_prefer_512_bit_vectors()
_cache_follows_every_kernel_source()

from .io import load  # noqa: E402
from .inputs import ScaledInputs  # noqa: E402
from .model import MLP  # noqa: E402

__version__ = "0.1.0"
__all__ = ["MLP", "ScaledInputs", "load", "__version__"]
