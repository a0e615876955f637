"""``focalcodec serve``: live speech over the network, many sessions batched, a web page.

``app`` (the Starlette application), ``config`` (:class:`ServeConfig`), ``protocol``
(the binary WebSocket protocol of ``docs/serve.md``), ``scheduler`` (continuous
batching), ``sessions`` (one stream's buffers and framing), ``live`` (the WebSocket
endpoints), ``rooms`` (relay rooms), ``http`` (the file endpoints), ``auth``,
``metrics``, ``client`` (the Python client) and ``static/`` (the page). Needs the
``serve`` extra: ``pip install 'focalcodec[serve]'``.
"""
