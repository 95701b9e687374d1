"""21-cm cosmology slices: the dataset format, the 21cmFAST driver and the stacking of users' own cubes.

``slices``     the ``slices21cm`` HDF5 format: :class:`~lenshpc.data.cosmo21cm.slices.SliceWriter`,
               :func:`~lenshpc.data.cosmo21cm.slices.open_slices` (reader with ``(rank, size)``)
``params``     the grid of (redshift × F_ESC10 × realisation) and its checks against 21cmFAST's ranges
``simulate``   ``lenshpc simulate21cm``: one shard per realisation, worker processes, parts dir, merge
``cubes``      ``lenshpc stack21cm``: users' cubes (21cmFAST HDF5, .npy, FITS) + a parameter catalogue

Nothing here imports py21cmfast at module level: the lens-only install works without it
(:func:`~lenshpc.data.cosmo21cm.params.require_21cmfast` says how to install it).
"""
