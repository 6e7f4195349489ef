"""Structured filter pruning: criteria, dependency analysis, physical removal, sensitivity scans."""

__all__ = []
