"""The Python road for ``datasets`` users: an Audio column in, a ``tokens`` column out.

::

    from focalcodec.pipeline.sources import tokenize_dataset

    ds = datasets.load_dataset("parquet", data_files="librispeech/*.parquet", split="train")
    ds = tokenize_dataset(ds, codec, audio_column="audio", batch_size=16)
    ds[0]["tokens"]

It works on a ``Dataset`` (map runs now, cached by ``datasets``) and on an
``IterableDataset`` (map runs as rows are read). The audio is decoded by this package
(the ``Audio`` column is read undecoded: bytes or path), and each batch goes through the
same encoding as ``focalcodec tokenize``: item by item on a CPU, padded on a GPU, and
items longer than ``long_seconds`` piece by piece; so the tokens are the command line's.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np
import torch

from ...errors import AudioError
from ...runtime import DistInfo
from ...tokens.dataset import token_meta
from ...tokens.files import token_dtype
from ..tokenize import TokenizeJob, TokenizeOptions, TokenizeReport, check_options
from .base import decode_audio, item_samples, long_reader_source
from .hf import audio_value, raw_audio

__all__ = ["TokensMapper", "tokenize_dataset", "tokens_mapper"]


class TokensMapper:
    """A batched ``datasets`` map function: ``{audio_column: [...]}`` ->
    ``{column: [tokens (L,), ...]}``; see :func:`tokens_mapper`."""

    def __init__(
        self,
        codec: Any,
        audio_column: str,
        column: str,
        options: TokenizeOptions,
        id_column: str | None,
    ) -> None:
        device = getattr(codec, "device", torch.device("cpu"))
        check_options(options, device)
        self.audio_column = audio_column
        self.column = column
        self.id_column = id_column
        self.dtype = token_dtype(token_meta(codec)["codebook_size"])
        self.job = TokenizeJob(
            codec, options, DistInfo(0, 1, 0, device), None, TokenizeReport(), None
        )

    def _name(self, batch: dict[str, list], k: int) -> str:
        ids = batch.get(self.id_column) if self.id_column else None
        return str(ids[k]) if ids else f"row {k} of the batch"

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        job, rate = self.job, self.job.rate
        long_samples = round(job.options.long_seconds * rate)
        minimum = job.min_samples
        out: list[Any] = [None] * len(batch[self.audio_column])
        short: list[tuple[int, np.ndarray]] = []
        for k, value in enumerate(batch[self.audio_column]):
            name = self._name(batch, k)
            audio = audio_value(value)
            samples = item_samples(audio, rate)
            if samples is not None and samples > long_samples:
                _, out[k] = job.encode_long(
                    long_reader_source(audio, name), name, False
                )
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sig = decode_audio(audio, rate, name)
            if len(sig) < minimum:
                raise AudioError(f"{name}: too short ({len(sig)} samples at {rate} Hz)")
            short.append((k, sig))
        if short:
            longest = max(len(s) for _, s in short)
            sig = torch.zeros(len(short), longest)
            for row, (_, s) in enumerate(short):
                sig[row, : len(s)] = torch.from_numpy(s)
            lengths = torch.tensor([len(s) for _, s in short], dtype=torch.long)
            for (k, _), toks in zip(short, job.encode(sig, lengths), strict=True):
                out[k] = toks
        return {self.column: [np.asarray(t).astype(self.dtype) for t in out]}


def tokens_mapper(
    codec: Any,
    *,
    audio_column: str = "audio",
    column: str = "tokens",
    id_column: str | None = None,
    exact: bool | None = None,
    precision: str = "fp32",
    long_seconds: float = 120.0,
) -> TokensMapper:
    """A function for ``ds.map(..., batched=True)`` that adds token ids.

    Parameters
    ----------
    codec
        The model (on its device, in eval mode).
    audio_column
        The column of audio: an undecoded ``Audio`` column (see :func:`raw_audio`),
        a struct with ``array`` and ``sampling_rate``, bytes or a path.
    column
        Name of the new column; tokens (L,) as uint16 (int32 above 2**16 codes).
    id_column
        A column that names rows in error messages.
    exact, precision, long_seconds
        As for ``focalcodec tokenize`` (:class:`TokenizeOptions`).
    """
    options = TokenizeOptions(
        exact=exact, precision=precision, long_seconds=long_seconds
    )
    return TokensMapper(codec, audio_column, column, options, id_column)


def tokenize_dataset(
    ds: Any,
    codec: Any,
    *,
    audio_column: str = "audio",
    batch_size: int = 16,
    num_proc: int | None = None,
    **options: Any,
) -> Any:
    """``ds`` (a ``datasets.Dataset`` or ``IterableDataset``) with a ``tokens``
    column, through :func:`tokens_mapper`: lists of ints once a ``Dataset`` has stored
    them, NumPy arrays (L,) as an ``IterableDataset`` yields them.

    Parameters
    ----------
    ds
        The dataset; its ``Audio`` column is cast to undecoded first.
    codec
        The model.
    audio_column
        The column of audio.
    batch_size
        Rows per map call (a padded batch on a GPU).
    num_proc
        ``Dataset.map`` processes (CPU only: each gets its own copy of the model).
    **options
        Passed to :func:`tokens_mapper` (``column``, ``id_column``, ``exact``, ...).
    """
    if "id_column" not in options and "id" in (ds.column_names or []):
        options["id_column"] = "id"
    mapper = tokens_mapper(codec, audio_column=audio_column, **options)
    ds = raw_audio(ds, audio_column)
    kwargs: dict[str, Any] = {"batched": True, "batch_size": batch_size}
    fingerprint = getattr(ds, "_fingerprint", None)
    if fingerprint is not None:  # a Dataset: name the result without hashing the model
        config = token_meta(codec)["config_hash"]
        key = f"{fingerprint}-{config}-{audio_column}-{batch_size}-{sorted(options.items())}"
        kwargs["new_fingerprint"] = hashlib.sha256(key.encode()).hexdigest()[:16]
        kwargs["num_proc"] = num_proc
    return ds.map(mapper, **kwargs)
