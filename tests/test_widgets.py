"""Every control of every panel at both ends (and every option): no exception, no warning, a PNG rendered."""
import warnings

import ipywidgets
import numpy as np
import pytest

from helpers import widgets
from helpers.widgets.panel import Panel, slider

PANELS = sorted(name for name in dir(widgets) if name.endswith("_panel"))
PNG = b"\x89PNG"


def settings(control):
    """Both ends of a slider, every option of a dropdown."""
    return list(control.options) if hasattr(control, "options") else [control.min, control.max]


def test_every_lesson_panel_is_found():
    assert {"memory_panel", "truncation_panel", "clipping_panel", "decay_panel", "influence_panel", "remedies_panel",
            "receptive_field_panel", "sampling_panel"} <= set(PANELS)


@pytest.mark.parametrize("name", PANELS)
def test_panel_contract(name):
    panel = getattr(widgets, name)()
    assert isinstance(panel, ipywidgets.Widget) and panel.controls and panel.figure.axes
    assert bytes(panel.image.value).startswith(PNG)


@pytest.mark.parametrize("name", PANELS)
def test_extremes_render_without_warning(name):
    panel = getattr(widgets, name)()
    defaults = dict(panel.values)
    for key, control in panel.controls.items():
        for value in settings(control):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                control.value = value
            assert bytes(panel.image.value).startswith(PNG), (key, value)
            for ax in panel.figure.axes:
                assert np.all(np.isfinite(ax.get_ylim())) and np.all(np.isfinite(ax.get_xlim())), (key, value)
        control.value = defaults[key]
    # all sliders at their maxima together: the most expensive setting must render too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for control in panel.controls.values():
            if hasattr(control, "max"):
                control.value = control.max
    assert bytes(panel.image.value).startswith(PNG)


@pytest.mark.parametrize("name", PANELS)
def test_moving_a_control_redraws_synchronously(name):
    panel = getattr(widgets, name)()
    before = bytes(panel.image.value)
    control = next(c for c in panel.controls.values() if hasattr(c, "max"))
    control.value = control.max
    assert bytes(panel.image.value) != before


def test_redraw_errors_propagate():
    def draw(fig, n):
        if n > 1:
            raise RuntimeError("boom")

    from helpers.plotting import figure
    panel = Panel({"n": slider("n", 1, 1, 3, 1, integer=True)}, figure()[0], draw)
    with pytest.raises(RuntimeError, match="boom"):
        panel.controls["n"].value = 2
