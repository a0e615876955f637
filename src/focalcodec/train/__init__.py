"""Training recipes for FocalCodec (optional: needs the ``train`` extra).

Stages, each trained around frozen parts of one :class:`~focalcodec.FocalCodec`:

* ``quantizer`` (:mod:`.quantizer`): compressor + BSQ + decompressor on encoder features;
* ``decoder`` (:mod:`.decoder`): Vocos / WaveNeXt from encoder features, with GAN losses;
* ``causal-encoder`` (:mod:`.causal`): FocalCodec-Stream's causal encoder distillation.

Run them with ``focalcodec train <stage> --config configs/<recipe>.yaml``. Nothing here
is imported by the core package.
"""

from .config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
