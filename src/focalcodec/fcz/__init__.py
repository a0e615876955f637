"""The ``.fcz`` byte format: container and packets (``bitstream``), the bounds every
header value must respect (``limits``) and lossless entropy coding of packets
(``entropy``).

A leaf package: it knows bytes only and imports nothing of the package but
:mod:`focalcodec.errors` (``docs/format.md`` describes the layout).
"""
