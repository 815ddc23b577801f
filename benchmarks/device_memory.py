"""Run one benchmark script as ``__main__``, then print the peak memory it used.

    python benchmarks/device_memory.py benchmarks/attacks_bench.py --images 100

The script runs unchanged (``runpy.run_path``, with ``sys.argv`` set to it and its
arguments, as ``python SCRIPT ARGS`` would). Afterwards, also when it fails, one line
starting ``peak memory:`` gives, for every local JAX device whose runtime keeps
allocator statistics (GPU, TPU), ``memory_stats()["peak_bytes_in_use"]``, the largest
number of bytes its allocator held at once during the run; PyTorch's CUDA peak
(``torch.cuda.max_memory_allocated``) when the script used CUDA through PyTorch; and the
process's peak resident host memory (``ru_maxrss``). JAX's CPU backend keeps no
allocator statistics, so on CPU only the host figure is printed.
"""

from __future__ import annotations

import resource
import runpy
import sys
from pathlib import Path

GIB = 2.0**30


def device_peaks() -> list[str]:
    """``"<device>: <GiB> GiB"`` for each local JAX device with allocator statistics, and
    for each CUDA device PyTorch allocated on; empty when none (or JAX never started)."""
    out = []
    if "jax" in sys.modules:
        import jax

        for d in jax.local_devices():
            stats = d.memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                out.append(f"jax {d.platform}:{d.id} {stats['peak_bytes_in_use'] / GIB:.3f} GiB")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            out.append(f"torch cuda:{i} {torch.cuda.max_memory_allocated(i) / GIB:.3f} GiB")
    return out


def host_peak_gib() -> float:
    """Peak resident memory of this process (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        raise SystemExit(0 if argv else 2)
    script = Path(argv[0])
    if not script.is_file():
        raise SystemExit(f"no benchmark script {script}")
    sys.argv = [str(script), *argv[1:]]
    sys.path[0] = str(script.resolve().parent)  # as `python SCRIPT` sets it
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        peaks = device_peaks() or ["no device allocator statistics (CPU backend)"]
        print(f"peak memory: {script.name}: {'; '.join(peaks)}; host RSS "
              f"{host_peak_gib():.3f} GiB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
