"""Quantization-aware training, post-training quantization and int8 export."""

__all__ = []
