"""Measurement and reports: FLOPs, parameters, size and latency; stage rows as a console table, JSON and Markdown."""

from .measure import count_flops, count_params, measure_latency, saved_size, weight_sparsity
from .rows import (
                   COLUMNS,
                   Column,
                   ConsoleTable,
                   Note,
                   ReportConfig,
                   StageReport,
                   add_column,
                   read_reports,
                   to_markdown,
                   write_reports,
)

__all__ = ["ReportConfig", "StageReport", "Note", "Column", "COLUMNS", "add_column", "ConsoleTable", "to_markdown",
           "write_reports", "read_reports", "count_flops", "count_params", "measure_latency", "saved_size",
           "weight_sparsity"]
