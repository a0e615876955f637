"""Entropy coding of ``.fcz`` packets with a trained token LM.

    from focalcodec.lm import LMEntropyModel
    from focalcodec.pipeline.compress import compress, decompress

    lm = LMEntropyModel("runs/lm/export")
    data = compress(sig, rate, codec, entropy=lm)      # the header records the LM hash
    rec, rate = decompress(data, codec, entropy=lm)    # another LM is refused

The probabilities come from :class:`~focalcodec.lm.exact.ExactLM`, so a file written on
one machine decodes on any other.
"""

from __future__ import annotations

import os

from ..errors import ModelMismatchError
from ..fcz.entropy import ENTROPY_LM, PredictiveCoder
from ..identity import HASH_SIZE, hash_bytes
from .exact import ExactLM
from .files import lm_hash, read_lm_folder

__all__ = ["LMEntropyModel"]


class LMEntropyModel:
    """A token LM folder as an entropy model for ``.fcz`` files.

    Parameters
    ----------
    folder
        An LM folder (``config.json`` + ``model.safetensors``).
    """

    entropy = ENTROPY_LM

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = str(folder)
        self.cfg, self.weights = read_lm_folder(folder)
        self.hash = lm_hash(self.cfg, self.weights)
        self.entropy_hash = bytes.fromhex(self.hash)[:HASH_SIZE]
        self._exact: ExactLM | None = None

    def coder(self, bits: int, codec_hash: bytes) -> PredictiveCoder:
        """A fresh coder for ``bits``-bit tokens of the codec whose hash starts so.

        Raises :class:`~focalcodec.errors.ModelMismatchError` when the LM models another
        codebook or another codec's tokens.
        """
        if 2**bits != self.cfg.codebook_size:
            raise ModelMismatchError(
                f"token LM {self.folder} models {self.cfg.codebook_size} tokens, but "
                f"the file has {2**bits} ({bits} bits per token)"
            )
        mine = hash_bytes(self.cfg.codec_hash)
        if self.cfg.codec_hash and codec_hash and mine != codec_hash[:HASH_SIZE]:
            raise ModelMismatchError(
                f"token LM {self.folder} was trained on tokens of codec {mine.hex()}, "
                f"not of this file's codec {codec_hash.hex()}"
            )
        if self._exact is None:
            self._exact = ExactLM(self.cfg, self.weights)
        return PredictiveCoder(self._exact.clone(), self.entropy_hash)
