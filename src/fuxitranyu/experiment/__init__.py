"""Experiments built from whole pipeline runs (the balance experiment: does a balanced mix help?)."""
