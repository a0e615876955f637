"""Running a trained model elsewhere or faster: opt-in fast modes (``fast``), ONNX
export (``onnx_export``) and the ONNX Runtime backend (``onnx_runtime``), and model cards
(``modelcard``). The core package never imports this one."""
