"""Ranking survey catalogues: ``metrics`` (ranks, tracer curves; pure numpy), ``shards`` (sharded scoring),
``report`` (tracers, CSV, figures), ``mine`` / ``rounds`` (candidate mining), ``page`` (the inspection page)."""
