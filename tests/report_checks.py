"""Report comparisons that leave out what is timed (latencies differ from one measurement to the next)."""

TIMED_EXTRA = ("eager_latency_ms", "latency_p10_ms", "latency_p90_ms", "float_export_latency_ms",
               "int8_speedup_vs_float_export")


def untimed(report):
    """A StageReport's dict (or a report.json row) without latencies and the notes that quote them."""
    from slimkit.deploy.stage_latency import SLOWER_NOTE

    d = dict(report) if isinstance(report, dict) else report.to_dict()
    d.pop("latency_ms")
    d["extra"] = {k: v for k, v in d["extra"].items() if k not in TIMED_EXTRA}
    d["notes"] = [n for n in d["notes"] if SLOWER_NOTE not in n]
    return d
