"""make bench: the speed figures quoted in the README (this machine, wall clock; not a test).

1. each live panel: one update (compute + PNG render) at its most expensive settings, median and p95;
2. helpers.flow.state_jacobian_norms at T = 1000, H = 64;
3. numpy LSTM forward+backward vs torch.nn.LSTM forward+backward (float64, T=100, B=32, I=H=64), as a ratio;
4. the wall time of executing each notebook.
"""
import glob
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from helpers import cells, flow, widgets  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(f, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return np.array(times) * 1e3  # ms


def bench_panels(moves=36):
    print("1. panel update = compute + PNG render (ms): each slider swept end to end with the other sliders at")
    print("   their maxima (the most expensive settings), then every option of each dropdown")
    for name in sorted(n for n in dir(widgets) if n.endswith("_panel")):
        panel = getattr(widgets, name)()
        sliders = {k: c for k, c in panel.controls.items() if hasattr(c, "max")}
        dropdowns = [c for c in panel.controls.values() if hasattr(c, "options")]
        for c in sliders.values():
            c.value = c.max
        settings = []
        for c in sliders.values():
            values = np.linspace(c.max, c.min, moves // max(len(sliders), 1) + 1)
            values = np.unique(np.round(values).astype(int)) if isinstance(c.value, int) else values
            settings += [(c, type(c.value)(v)) for v in values[::-1]] + [(c, c.max)]
        settings += [(c, option) for c in dropdowns for option in list(c.options)[1:] + list(c.options)[:1]]
        times = []
        for control, value in settings:
            if control.value == value:
                continue  # no change, no redraw: nothing to time
            t = time.perf_counter()
            control.value = value
            times.append(time.perf_counter() - t)
        times = np.array(times) * 1e3
        print(f"   {name:28s} median {np.median(times):6.1f}   p95 {np.percentile(times, 95):6.1f}   "
              f"({len(times)} updates)")


def bench_flow():
    print("2. helpers.flow.state_jacobian_norms, T = 1000, H = 64 (ms)")
    rng = np.random.default_rng(0)
    p = cells.init_params("rnn", 4, 64, rng)
    x = rng.normal(size=(1000, 1, 4))
    for ord_ in ("fro", 2):
        t = timed(lambda: flow.state_jacobian_norms(x, np.zeros((1, 64)), p, "tanh", ord_), 7)
        print(f"   ord={ord_!s:4s} median {np.median(t):6.1f}")


def bench_lstm():
    print("3. LSTM forward+backward, float64, T=100, B=32, I=H=64 (ms)")
    T, B, I, H = 100, 32, 64, 64
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(I, H).double()
    p = cells.params_from_torch(lstm)
    x, dhs = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, H))
    s0 = (np.zeros((B, H)), np.zeros((B, H)))
    xt, dt = torch.tensor(x), torch.tensor(dhs)

    def numpy_pass():
        hs, _, cache = cells.lstm_forward(x, s0, p)
        cells.lstm_backward(dhs, None, cache)

    def torch_pass():
        lstm.zero_grad()
        out, _ = lstm(xt)
        out.backward(dt)

    t_np, t_torch = np.median(timed(numpy_pass, 15)), np.median(timed(torch_pass, 15))
    print(f"   numpy {t_np:6.1f}   torch {t_torch:6.1f}   numpy/torch = {t_np / t_torch:.2f}"
          f"   (torch threads: {torch.get_num_threads()})")


def bench_notebooks():
    print("4. notebook execution, fresh kernel, wall time (s)")
    for path in sorted(glob.glob(os.path.join(ROOT, "notebooks", "[0-9][0-9]_*.ipynb"))):
        nb = nbformat.read(path, as_version=4)
        t = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", extra_arguments=["--IPKernelApp.log_level=ERROR"],
                       resources={"metadata": {"path": os.path.dirname(path)}}).execute()
        print(f"   {os.path.basename(path):40s} {time.perf_counter() - t:6.1f}")


SECTIONS = {"panels": bench_panels, "flow": bench_flow, "lstm": bench_lstm, "notebooks": bench_notebooks}

if __name__ == "__main__":  # python tests/bench.py [panels flow lstm notebooks]
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, numpy {np.__version__}")
    for section in sys.argv[1:] or SECTIONS:
        SECTIONS[section]()
