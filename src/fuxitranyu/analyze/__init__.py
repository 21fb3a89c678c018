"""The paper's analyses (section 6): neuron importance per language, layer and component, and representation
similarity between languages per layer, for any Hugging Face causal LM of a supported layout (docs/analyze.md)."""

from fuxitranyu.analyze.hooks import DecoderLayout, find_layout
from fuxitranyu.analyze.inputs import ParallelTexts, aligned_texts
from fuxitranyu.analyze.neurons import NeuronImportance, neuron_importance
from fuxitranyu.analyze.representations import RepresentationSimilarity, representation_similarity

__all__ = ["DecoderLayout", "NeuronImportance", "ParallelTexts", "RepresentationSimilarity", "aligned_texts",
           "find_layout", "neuron_importance", "representation_similarity"]
