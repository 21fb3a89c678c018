"""Evaluation through lm-evaluation-harness (paper section 5): suites as data, offline tasks cut from the held-out
parallel sets, a ROUGE for every script, the paper's reported numbers, balance across languages, checkpoint sweeps.

Heavy imports (lm-eval, datasets, torch models) happen inside the functions that run an evaluation.
"""
