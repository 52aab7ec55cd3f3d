"""Ensembles of registered models: voting, stacking, blending."""
