"""Running a trained model elsewhere or faster, on the far side of the Codec protocol.

Opt-in fast modes (``fast``; their modules in ``int8`` and ``lean``, append-only
buffers in ``tape``), ONNX export (``onnx_export``, the traced modules in
``onnx_graphs``, the original single-graph form in ``onnx_forward``), the ONNX Runtime
backend (``onnx_runtime``, a :class:`focalcodec.protocol.Codec`), traced TorchScript
networks (``scripted``) and model cards (``modelcard``). Models are changed only by
module swaps on copies (``swap``). The core package imports this one only lazily, on
request (``FocalCodec.jit``, ``FocalCodec.onnx``).
"""
