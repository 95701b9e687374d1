"""lenshpc: train and evaluate CNN strong-gravitational-lens finders at cluster scale.

The package mirrors the pipeline: ``data`` (HDF5 datasets, stacking, simulation, chunk
engine) → ``models`` / ``losses`` / ``metrics`` → ``train`` → ``distributed`` / ``hpc``
→ ``analysis`` → ``report``.  The command line (``lenshpc --help``) is a thin layer over
these modules.
"""

__version__ = "0.1.0"
