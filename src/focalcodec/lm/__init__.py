"""Token language models: training, sampling, and entropy coding of ``.fcz`` files.

* :mod:`~focalcodec.lm.model`: :class:`TokenLM`, a small decoder-only transformer over
  codec tokens (ALiBi, squared-ReLU MLP, parameter-free RMSNorm, SDPA attention).
* :mod:`~focalcodec.lm.files`: LM folders (``config.json`` + ``model.safetensors``).
* :mod:`~focalcodec.lm.exact`: the same LM in machine-independent arithmetic.
* :mod:`~focalcodec.lm.coding`: :class:`LMEntropyModel` for ``compress(entropy=...)``.
* :mod:`~focalcodec.lm.sampling`: continuation and generation.
* :mod:`~focalcodec.lm.train`, :mod:`~focalcodec.lm.stage`, :mod:`~focalcodec.lm.data`:
  training with the package's trainer (needs the ``lm`` extra).

See ``docs/lm.md`` and ``docs/entropy.md``.
"""

from .coding import LMEntropyModel
from .exact import ExactLM
from .files import lm_hash, load_lm, read_lm_folder, save_lm
from .model import LMConfig, TokenLM

__all__ = [
    "ExactLM",
    "LMConfig",
    "LMEntropyModel",
    "TokenLM",
    "lm_hash",
    "load_lm",
    "read_lm_folder",
    "save_lm",
]
