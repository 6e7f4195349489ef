"""What this CPU can run fast: the ISA extensions that decide oneDNN's kernels, for alignment and reports."""

import os
import platform

# ISA extensions that decide which kernels oneDNN (and other runtimes) can use.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "amx_tile", "amx_int8", "amx_bf16")


def cpu_features(cpuinfo="/proc/cpuinfo"):
    """The ISA flags of `ISA_FLAGS` this CPU has (from /proc/cpuinfo on Linux; [] where unknown)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    found = set(line.split(":", 1)[1].split())
                    return [flag for flag in ISA_FLAGS if flag in found]
    except OSError:
        pass
    return []


def cpu_description():
    """'x86_64, 2 cores, avx2 fma ...' for reports."""
    flags = " ".join(cpu_features()) or "ISA flags unknown"
    return f"{platform.machine()}, {os.cpu_count()} cores, {flags}"
