"""The paper's analyses (section 6): neuron importance per language, layer and component, and representation
similarity between languages per layer, for any Hugging Face causal LM of a supported layout (docs/analyze.md)."""

from fuxitranyu.lazy import lazy_exports

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
"""The package's public names and the modules they live in (`fuxitranyu.lazy`)."""

__all__ = sorted(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
