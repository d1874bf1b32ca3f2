"""Live panels. Each `*_panel()` returns a Panel (an ipywidgets VBox) with `.controls` and `.figure`;
`draw_*` functions draw the same figure statically. Computation lives in the other helpers modules."""
from .gradients import decay_panel, draw_decay, draw_influence, influence_panel
from .panel import Panel

__all__ = ["Panel", "decay_panel", "draw_decay", "draw_influence", "influence_panel"]
