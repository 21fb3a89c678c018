"""The analyze stage's folder, named once: the stage and `fuxitranyu analyze ... --out-dir DIR` write the same layout,
and the report and the balance experiment read it through these names."""

NEURONS = "neurons"
"""Neuron importance (paper 6.1): importance.csv / .json, figures, optional per-unit .npz."""
REPRESENTATIONS = "representations"
"""Representation similarity (paper 6.2): similarity.csv / .json, mean_similarity.csv, figures."""
INPUTS = "inputs.json"
"""In each analysis folder: the models, device, precision and the parallel texts measured (with their sha256)."""
IMPORTANCE_CSV = "importance.csv"
IMPORTANCE_JSON = "importance.json"
SIMILARITY_CSV = "similarity.csv"
MEAN_SIMILARITY_CSV = "mean_similarity.csv"
SIMILARITY_JSON = "similarity.json"
