"""Ensembles of finished runs: ``members`` → ``scorer`` (load_scorer), ``fit`` (Nelder–Mead), ``spec`` (the YAML),
``ensemble`` (plan + run a spec), ``report`` (Table 5.2), ``ide`` (the input-dependent ensemble)."""
