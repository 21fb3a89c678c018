"""fuxitranyu: the FuxiTranyu multilingual LLM system end to end (arXiv 2408.06273).

Importing the package makes transformers' Auto classes load our checkpoints without `trust_remote_code`
(`import fuxitranyu; AutoModelForCausalLM.from_pretrained(dir)`). The package stays light, so that the command line
answers `--help` or a bad argument without loading torch and transformers: our model type is registered with the Auto
classes when the program first calls them (`from_pretrained`, `from_config`, `for_model`), or at once when
`fuxitranyu.model.modeling` loads.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from importlib.abc import MetaPathFinder

from fuxitranyu.errors import FuxiError
from fuxitranyu.lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["FuxiError", "FuxiTranyuConfig", "FuxiTranyuForCausalLM", "FuxiTranyuModel", "__version__"]

_AUTO_CLASSES = {
    "transformers.models.auto.configuration_auto": ("AutoConfig", ("from_pretrained", "for_model")),
    "transformers.models.auto.auto_factory": ("_BaseAutoModelClass", ("from_pretrained", "from_config")),
}
"""The Auto classes' entry points, by the module that defines them: each calls `_register` before its first use."""


def _register() -> None:
    import fuxitranyu.model.modeling  # noqa: F401  registers our classes with the Auto classes when it loads


def _register_first(cls: type, name: str) -> None:
    """Make the classmethod `cls.name` register our model type before it runs. Wrapped rather than registered
    when transformers loads, because registering imports our modeling code, which imports transformers modules that
    may still be loading at that moment."""
    function = cls.__dict__[name].__func__

    @functools.wraps(function)
    def first_register(klass, *args, **kwargs):
        _register()
        return function(klass, *args, **kwargs)

    setattr(cls, name, classmethod(first_register))


class _RegisterOnFirstUse(MetaPathFinder):
    """Wraps the Auto classes' entry points (`_register_first`) as soon as transformers defines them."""

    def __init__(self):
        self.pending = set(_AUTO_CLASSES)

    def find_spec(self, name, path, target=None):
        if name not in self.pending:
            return None
        self.pending.discard(name)
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)  # this finder skips it now: transformers' own spec
        execute = spec.loader.exec_module
        class_name, methods = _AUTO_CLASSES[name]

        def exec_then_wrap(module):
            execute(module)
            for method in methods:
                _register_first(getattr(module, class_name), method)

        spec.loader.exec_module = exec_then_wrap
        return spec


if any(name in sys.modules for name in _AUTO_CLASSES):  # transformers' Auto classes are loaded already
    _register()
else:
    sys.meta_path.insert(0, _RegisterOnFirstUse())


__getattr__ = lazy_exports(__name__, dict.fromkeys(("FuxiTranyuConfig", "FuxiTranyuForCausalLM", "FuxiTranyuModel"),
                                                  "fuxitranyu.model"))
