"""Network blocks of the pipeline, one file per role.

``wavlm`` (encoder), ``focalnet`` (compressor and decompressor), ``bsq`` (quantizer),
``vocos`` / ``wavenext`` (decoders, on ``convnext``), with the shared pieces in
``layers`` and ``attention``, and ``knn`` (the nearest-neighbour matching of voice
conversion).
"""
