"""Knowledge distillation losses and feature adapters."""

__all__ = []
