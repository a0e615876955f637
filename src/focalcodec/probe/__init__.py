"""Downstream probes: what a codec's tokens are worth for ASR and classification.

Small networks (an embedding initialised with the codec's binary codes, a BiLSTM and a
CTC or pooled classification head) are trained on frozen tokens, or on the
decompressed features, with the package's trainer; their test scores compare codecs.
See ``docs/probes.md`` and ``focalcodec probe --help``.
"""

from .config import ProbeConfig, load_probe_config
from .runner import ProbeJob, run_probe

__all__ = ["ProbeConfig", "ProbeJob", "load_probe_config", "run_probe"]
