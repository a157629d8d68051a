"""Spectral products: channel grouping (grppha semantics) and, later, spectral models."""
