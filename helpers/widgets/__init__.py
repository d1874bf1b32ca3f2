"""Live panels, one module per lesson. Each `*_panel()` returns a Panel (an ipywidgets VBox) with `.controls`
and `.figure`; the module's `draw_*` functions draw the same figure statically for the stored outputs.
Computation lives in the other helpers modules; these only display.

Every `*_panel`, `draw_*` and `*_DEFAULTS` of every module in this package is exported here, so a new lesson's
module is picked up by the notebooks and by tests/test_widgets.py without a registry to keep in sync.
"""
import importlib
import pkgutil

from .panel import Panel

__all__ = ["Panel"]
for _info in pkgutil.iter_modules(__path__):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in dir(_module):
        if _name.endswith(("_panel", "_DEFAULTS")) or _name.startswith("draw_"):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
