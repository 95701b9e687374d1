"""Data stage: the HDF5 format, FITS stacking, simulation, mock merging, augmentation, chunks."""

from lenshpc.data.format import Dataset, open_dataset, write_labelled, write_population

__all__ = ["Dataset", "open_dataset", "write_labelled", "write_population"]
