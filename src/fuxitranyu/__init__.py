"""fuxitranyu: the FuxiTranyu multilingual LLM system end to end (arXiv 2408.06273).

Importing the package registers `FuxiTranyuConfig` / `FuxiTranyuForCausalLM` with transformers' Auto classes, so
`AutoModelForCausalLM.from_pretrained(dir)` loads our checkpoints without `trust_remote_code`.
"""

from fuxitranyu.errors import FuxiError
from fuxitranyu.model import FuxiTranyuConfig, FuxiTranyuForCausalLM, FuxiTranyuModel

__version__ = "0.1.0"
__all__ = ["FuxiError", "FuxiTranyuConfig", "FuxiTranyuForCausalLM", "FuxiTranyuModel", "__version__"]
