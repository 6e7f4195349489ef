"""Unstructured (weight) and neuron pruning with masks and sparsity schedules."""

__all__ = []
