"""torch.hub entry point.

    model = torch.hub.load("<owner>/focalcodec", "focalcodec", config="focalcodec_50hz")
    model = torch.hub.load("/path/to/checkout", "focalcodec", source="local")

torch.hub imports this file from the repository root. When ``focalcodec`` is not
installed, the package is taken from the ``src/`` folder next to this file.
"""

import importlib.util
import sys
from pathlib import Path

# torch.hub checks that these import before calling an entry point.
dependencies = ["torch", "numpy", "safetensors", "huggingface_hub", "tqdm"]

if importlib.util.find_spec("focalcodec") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def focalcodec(
    config="lucadellalib/focalcodec_50hz", pretrained=True, overrides=None, **kwargs
):
    """A FocalCodec model in eval mode.

    Parameters
    ----------
    config
        Packaged name (``focalcodec_50hz``), Hugging Face repo id, local directory or
        ``.json`` file.
    pretrained
        Load the weights; False builds the architecture with random weights.
    overrides
        Config values to replace, e.g. ``{"encoder_config": {"window_size": 256}}``.
    **kwargs
        Passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``...).

    Returns
    -------
    focalcodec.FocalCodec
    """
    from focalcodec import FocalCodec

    return FocalCodec.from_config(config, pretrained, overrides, **kwargs).eval()
