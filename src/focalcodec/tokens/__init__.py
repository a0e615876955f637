"""Token datasets: folders of the tokens of many audio files, written resumably by one
or many processes and read back as a ``torch`` dataset.

``dataset`` is the public API (:class:`~focalcodec.tokens.dataset.TokenDataset`,
:func:`~focalcodec.tokens.dataset.write_tokens`, packing collate functions), ``writer``
writes folders rank by rank, ``files`` knows their files and checksums. Nothing here
runs the codec: :mod:`focalcodec.pipeline.tokenize` does, and writes through this
package.
"""
