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


# The files whose jitted code (or code generators) other files' kernels call and inline.
KERNEL_SOURCES = ("activations.py", "kernels.py", "paired.py", "simd.py", "small_layers.py", "transposed.py")


def kernel_sources_stamp(package_dir):
    """(mtime, size) of each of KERNEL_SOURCES in package_dir."""
    stamps = []
    for name in KERNEL_SOURCES:
        st = os.stat(os.path.join(package_dir, name))
        stamps.append((st.st_mtime, st.st_size))
    return tuple(stamps)


def cache_follows_every_kernel_source():
    """Make Numba's disk cache of fastbp's kernels go stale when any of KERNEL_SOURCES changes.

    Numba stamps a cached function with its own file's time and size only, so a kernel in kernels.py that
    inlines one from transposed.py kept loading its old machine code after transposed.py changed. fastbp's
    functions get locators (Numba's own two, in their order) whose stamp also holds every kernel source's.
    """
    from numba.core import caching
    package_dir = os.path.dirname(os.path.abspath(__file__))

    def following(base):
        class Locator(base):
            @classmethod
            def from_function(cls, py_func, py_file):
                if os.path.dirname(os.path.abspath(py_file)) != package_dir:
                    return None
                return super().from_function(py_func, py_file)

            def get_source_stamp(self):
                return super().get_source_stamp(), kernel_sources_stamp(package_dir)
        Locator.__name__ = f"FastbpSources{base.__name__}"
        return Locator

    classes = caching.CacheImpl._locator_classes
    if not any(c.__name__.startswith("FastbpSources") for c in classes):
        classes[:0] = [following(caching.UserProvidedCacheLocator), following(caching.InTreeCacheLocator)]


_threads_started = False


def start_numba_threads():
    """Start Numba's threading layer if it has not started (cheap once it has); fastbp calls it before a kernel.

    A kernel that Numba compiled and cached in a process where its parallel callees had been loaded from the disk
    cache, not compiled, is saved without the hook that starts the threading layer when the kernel is loaded. A new
    process whose first act was to load such a kernel called a null pointer (a segmentation fault in the first
    ``train_epoch`` call, after a test run had filled the cache in that order). With the layer started first, the
    same cache trained normally.
    """
    global _threads_started
    if _threads_started:
        return
    from numba.np.ufunc import parallel
    if not parallel._is_initialized:
        parallel._launch_threads()
    _threads_started = True
