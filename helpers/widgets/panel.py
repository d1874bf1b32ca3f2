"""The Panel: controls on top, one figure below, redrawn synchronously on every change.

The figure is rendered to PNG into an `ipywidgets.Image`, so the panel works the same in JupyterLab,
Notebook 7 and VS Code, needs no Output-widget routing, and a redraw error propagates to the caller.
"""
import io

import ipywidgets as W
from matplotlib.backends.backend_agg import FigureCanvasAgg


class Panel(W.VBox):
    """controls: dict name -> widget; draw(fig, **values) redraws `figure` in place from the control values."""

    def __init__(self, controls, figure, draw, caption=""):
        self.controls, self.figure, self._draw = controls, figure, draw
        self._canvas = FigureCanvasAgg(figure)  # print_png here skips savefig's second layout pass
        self.image = W.Image(format="png", layout=W.Layout(width="auto", max_width="100%"))
        rows = [W.HBox(list(controls.values()), layout=W.Layout(flex_flow="row wrap"))]
        if caption:
            rows.append(W.HTML(f"<small>{caption}</small>"))
        super().__init__(rows + [self.image])
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    @property
    def values(self):
        return {name: c.value for name, c in self.controls.items()}

    def update(self):
        """Recompute and redraw the figure, then send the new PNG to the front end."""
        self._draw(self.figure, **self.values)
        buf = io.BytesIO()
        self._canvas.print_png(buf, pil_kwargs={"compress_level": 1})  # speed over bytes on a local socket
        self.image.value = buf.getvalue()

    def _on_change(self, change):
        self.update()


def slider(description, value, lo, hi, step, fmt=None, integer=False):
    """A labelled slider that follows the mouse (updates are fast enough to redraw on every move)."""
    cls = W.IntSlider if integer else W.FloatSlider
    kw = {} if fmt is None else {"readout_format": fmt}
    return cls(value=value, min=lo, max=hi, step=step, description=description, continuous_update=True,
               style={"description_width": "initial"}, layout=W.Layout(width="320px"), **kw)


def choice(description, options, value):
    return W.Dropdown(options=list(options), value=value, description=description,
                      style={"description_width": "initial"}, layout=W.Layout(width="240px"))
