"""The config hash names what changes a model's outputs, not runtime knobs.

A model whose position-bias cache size (``encoder_config.max_cached_steps``) is
overridden must still read its own ``.fcz`` files; the official models' hashes (stored in
every file made with them) must not change; files written before the knobs were left out
must still decode.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcodec import FocalCodec
from focalcodec.config import RUNTIME_KNOBS, config_hash, normalize_config
from focalcodec.errors import ModelMismatchError
from focalcodec.fcz import bitstream
from focalcodec.pipeline.compress import compress, decompress
from focalcodec.pretrained import packaged_config, packaged_names

MODEL = "causal_wavenext_50hz"  # its config has max_cached_steps=32

# The hashes of the packaged configs before this change (focalcodec 0.x, commit
# a7e21c0): every .fcz file made with an official model stores the first 8 bytes.
OFFICIAL = {
    "focalcodec_12_5hz": "c42f9b7ec3b24a32",
    "focalcodec_25hz": "4b299cc9cd43b98d",
    "focalcodec_50hz": "7172ee33bf9e94d6",
    "focalcodec_50hz_2k_causal": "7b6201dcd71d2428",
    "focalcodec_50hz_4k_causal": "a0887cf21514e379",
    "focalcodec_50hz_65k_causal": "ae1e41bdd459d7c4",
}


def test_official_hashes_do_not_change():
    assert sorted(packaged_names()) == sorted(OFFICIAL)
    for name, digest in OFFICIAL.items():
        assert config_hash(packaged_config(name)) == digest, name


@pytest.mark.parametrize(
    "knob, value",
    [
        ("encoder_config.max_cached_steps", 0),
        ("encoder_config.max_cached_steps", 4096),
        ("encoder_config.use_flex_attention", True),
    ],
)
def test_runtime_knobs_keep_the_hash(knob, value):
    assert knob in RUNTIME_KNOBS
    for name in OFFICIAL:
        config = packaged_config(name)
        slot, key = knob.split(".")
        config[slot][key] = value
        assert config_hash(config) == OFFICIAL[name]


def test_architecture_changes_change_the_hash():
    base = packaged_config("focalcodec_50hz")
    for slot, key, value in [
        ("encoder_config", "num_layers", 5),
        ("quantizer_config", "codebook_size", 4096),
        ("encoder_config", "window_size", 256),
    ]:
        config = json.loads(json.dumps(base))
        config[slot][key] = value
        assert config_hash(config) != OFFICIAL["focalcodec_50hz"], key


@pytest.fixture(scope="module")
def speech(data_dir: Path) -> np.ndarray:
    from focalcodec.files.audio import load_audio

    return load_audio(
        data_dir / "audio" / "multilingual" / "it" / "agent-loggedoff.flac", 16000
    ).sig


def test_overridden_knob_reads_its_own_files(golden_dir, speech):
    """The reported case: an override made the model refuse its own files."""
    plain = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    tuned = FocalCodec.from_pretrained(
        golden_dir / MODEL, overrides={"encoder_config.max_cached_steps": 0}
    ).eval()
    assert tuned.encoder.max_cached_steps == 0 != plain.encoder.max_cached_steps
    assert tuned.config_hash() == plain.config_hash()
    for writer, reader in [(plain, tuned), (tuned, plain), (tuned, tuned)]:
        data = compress(speech, 16000, writer)
        sig, _ = decompress(data, reader)
        ref, _ = decompress(data, writer)
        torch.testing.assert_close(sig, ref)


def test_files_with_the_earlier_hash_still_decode(golden_dir, speech):
    """A file written before the knobs were left out of the hash (the golden model's
    max_cached_steps=32 differs from the official value, so its hash changed)."""
    codec = FocalCodec.from_pretrained(golden_dir / MODEL).eval()
    config = json.loads((golden_dir / MODEL / "config.json").read_text())
    text = json.dumps(normalize_config(config), sort_keys=True, separators=(",", ":"))
    earlier = bytes.fromhex(hashlib.sha256(text.encode()).hexdigest()[:16])
    assert earlier.hex() != codec.config_hash()
    container = bitstream.loads(compress(speech, 16000, codec))
    header = container.header.__class__(
        **{**container.header.__dict__, "model_hash": earlier}
    )
    data = bitstream.dumps(header, container.toks, container.num_samples)
    sig, _ = decompress(data, codec)
    assert sig.shape[0] == int(len(speech) * 1.5)
    # Any other hash is still refused.
    header = header.__class__(**{**header.__dict__, "model_hash": bytes(8)})
    with pytest.raises(ModelMismatchError):
        decompress(
            bitstream.dumps(header, container.toks, container.num_samples), codec
        )
