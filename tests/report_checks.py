"""Report comparisons that leave out what is timed (latencies differ from one measurement to the next)."""

TIMED_EXTRA = ("eager_latency_ms", "latency_p10_ms", "latency_p90_ms", "float_export_latency_ms",
               "int8_speedup_vs_float_export")
TIMED_NOTES = ("slower", "int8_speed")  # note kinds that quote a latency


def untimed(report):
    """A StageReport's dict (or a report.json row) without latencies and the notes that quote them."""
    d = dict(report) if isinstance(report, dict) else report.to_dict()
    d.pop("latency_ms")
    d["extra"] = {k: v for k, v in d["extra"].items() if k not in TIMED_EXTRA}
    d["notes"] = [n for n in d["notes"] if (n.get("kind") if isinstance(n, dict) else None) not in TIMED_NOTES]
    return d
