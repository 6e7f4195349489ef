"""Report comparisons that leave out what is timed (latencies differ from one measurement to the next)."""

TIMED_EXTRA = ("eager_latency_ms", "eager_latency_low_ms", "eager_latency_high_ms", "latency_p10_ms",
               "latency_p90_ms", "latency_low_ms", "latency_high_ms", "latency_wall_ms", "latency_timing",
               "latency_vs_baseline", "latency_vs_previous", "float_export_latency_ms",
               "int8_speedup_vs_float_export", "int8_speedup_interval")
TIMED_NOTES = ("slower", "noisy", "int8_speed")  # note kinds that quote a latency


def untimed(report):
    """A StageReport's dict (or a report.json row) without latencies and the notes that quote them."""
    d = dict(report) if isinstance(report, dict) else report.to_dict()
    d.pop("latency_ms")
    d["extra"] = {k: v for k, v in d["extra"].items() if k not in TIMED_EXTRA}
    d["notes"] = [n for n in d["notes"] if (n.get("kind") if isinstance(n, dict) else None) not in TIMED_NOTES]
    return d
