"""The deployed model: exports for Paddle Inference and ONNX Runtime, and the runtimes that run them."""
