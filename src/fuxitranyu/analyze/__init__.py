"""The paper's analyses (section 6): neuron importance per language, layer and component, and representation
similarity between languages per layer, for any Hugging Face causal LM of a supported layout (docs/analyze.md)."""

from importlib import import_module

_WHERE = {
    "DecoderLayout": "fuxitranyu.analyze.hooks",
    "NeuronImportance": "fuxitranyu.analyze.neurons",
    "ParallelTexts": "fuxitranyu.analyze.inputs",
    "RepresentationSimilarity": "fuxitranyu.analyze.representations",
    "aligned_texts": "fuxitranyu.analyze.inputs",
    "find_layout": "fuxitranyu.analyze.hooks",
    "neuron_importance": "fuxitranyu.analyze.neurons",
    "representation_similarity": "fuxitranyu.analyze.representations",
}
"""The package's public names and the modules they live in, imported when first used: importing a submodule (the
command line imports `artifacts`) does not load torch."""

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
