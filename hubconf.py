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
    config: str = "lucadellalib/focalcodec_50hz",
    pretrained: bool = True,
    overrides: dict | None = None,
    **kwargs,
):
    """A FocalCodec model in eval mode.

    The parameters are those of the original package's entry point. Unlike it, the model
    comes back in eval mode (the original returned it in training mode; its callers
    call ``.eval()``, which stays harmless).

    Parameters
    ----------
    config
        Packaged name (``focalcodec_50hz``), Hugging Face repo id (or ``repo/file.json``),
        local directory, or local ``.json`` file (the suffix may be left out).
    pretrained
        Load the weights; False builds the architecture with random weights.
    overrides
        Config values to replace, by dot path, e.g.
        ``{"encoder_config.max_cached_steps": 0}``.
    **kwargs
        Passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``...).

    Returns
    -------
    focalcodec.FocalCodec
    """
    from focalcodec import FocalCodec

    return FocalCodec.from_config(config, pretrained, overrides, **kwargs).eval()
