"""Every position has exactly one stop: pure reconcile, per-position supervisors, the guard."""
