"""What fastbp asks of Numba's code generation; applied by ``fastbp/__init__`` before any kernel is compiled."""
import os
import platform

X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
WIDE_VECTORS = "-prefer-256-bit"  # the feature that lifts LLVM's preference for 256-bit vectors on Intel's cores


def prefer_512_bit_vectors():
    """Let LLVM vectorise with 512-bit registers on an x86 CPU with AVX-512, unless the user has chosen the
    target (``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` set).

    LLVM's tuning for Intel's AVX-512 cores (Skylake-SP to Emerald Rapids) prefers 256-bit vectors, so the
    kernels' loops ran at half the width the CPU has. With ``-prefer-256-bit`` added to the host's features
    (through ``NUMBA_CPU_FEATURES``, which child processes such as MPI ranks inherit) a 2-core Xeon (Emerald
    Rapids) trained the book's network 1.26x (float64) and 1.21x (float32) faster on one thread, 1.2x and 1.07x
    on two, and [784, 256, 128, 10] 1.3-1.4x (medians of four pairs of runs, one process each, taking turns).
    Compile time did not change. CPUs whose tuning already prefers 512-bit vectors, or that have no AVX-512, get
    the same code as before. Takes effect only if Numba has compiled nothing yet in this process.
    """
    if not X86 or "NUMBA_CPU_NAME" in os.environ or "NUMBA_CPU_FEATURES" in os.environ:
        return
    from numba.core import codegen, config
    features = codegen.get_host_cpu_features()
    if "+avx512f" not in features.split(","):
        return
    os.environ["NUMBA_CPU_FEATURES"] = features + "," + WIDE_VECTORS
    config.reload_config()


def compiled_target():
    """(CPU name, feature string) that Numba compiles for in this process."""
    from numba.core.registry import cpu_target
    codegen = cpu_target.target_context.codegen()
    return codegen._get_host_cpu_name(), codegen._tm_features
