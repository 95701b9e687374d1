"""One module per CLI verb (see ``lenshpc.cli``): ``HELP``, ``add_arguments``, ``run``."""
