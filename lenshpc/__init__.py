"""lenshpc: train and evaluate CNN strong-gravitational-lens finders at cluster scale.

The package mirrors the pipeline: ``data`` (HDF5 datasets, stacking, simulation, chunk
engine) → ``models`` / ``losses`` / ``metrics`` → ``train`` → ``distributed`` / ``hpc``
→ ``analysis`` → ``report``.  The command line (``lenshpc --help``) is a thin layer over
these modules.
"""

__version__ = "0.1.0"

# Before anything can import TensorFlow: keep its oneDNN AVX-512 kernels, which corrupt the heap for
# small batches, out of this process on the CPUs that have them (lenshpc/runtime.py says why and how).
from lenshpc.runtime import configure_tensorflow as _configure_tensorflow

_configure_tensorflow()
