"""Whether the tick path uses its compiled kernels (numba): off until a desk turns it on.

Why a switch: importing numba and loading the kernels costs ~1 s once per process. A desk that
runs for hours pays it when it is built, before its first tick
(:func:`kit.portfolio.valuation.compile_tick_path`); a command that values a book once (``kit
book``) keeps the NumPy path and never pays it. The results are the same either way (the
kernels are tested against the NumPy path).
"""

ON = False
