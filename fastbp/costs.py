"""Cost functions: names and integer codes for the kernels (BP1 lives in :mod:`fastbp.kernels`)."""

QUADRATIC, CROSS_ENTROPY, LOG_LIKELIHOOD = 0, 1, 2

CODES = {"quadratic": QUADRATIC, "cross-entropy": CROSS_ENTROPY, "log-likelihood": LOG_LIKELIHOOD}
NAMES = {code: name for name, code in CODES.items()}


def parse(cost):
    """Return the kernel code of the cost called ``cost``."""
    if not isinstance(cost, str) or cost not in CODES:
        raise ValueError(f"cost must be one of {sorted(CODES)}; got {cost!r}.")
    return CODES[cost]
