"""Benchmarks that ship with the package (``oxunet bench ...``), so they run from an installed wheel."""
