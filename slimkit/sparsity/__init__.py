"""Unstructured (weight) and neuron pruning with masks and sparsity schedules."""

from .criteria import (PRUNABLE_LAYERS, SPARSITY_CRITERIA, SparsityCriterion, compute_masks, get_sparsity_criterion,
                       register_prunable_layer, sparse_prunable_layers)
from .masks import apply_masks, masked_layers, sparsify, sparsity_stats, strip_masks
from .schedules import ConstantSparsity, PolynomialDecay, SparsitySchedule

__all__ = ["sparsify", "apply_masks", "strip_masks", "masked_layers", "sparsity_stats", "sparse_prunable_layers",
           "compute_masks", "SparsitySchedule", "ConstantSparsity", "PolynomialDecay", "SparsityCriterion",
           "SPARSITY_CRITERIA", "get_sparsity_criterion", "register_prunable_layer", "PRUNABLE_LAYERS"]
