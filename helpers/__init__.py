"""RNN Interview Lab helpers: numpy cells (cells), gradient checks (gradcheck), gradient-flow measurements
(flow), synthetic tasks (tasks), small torch training loops (training), figure style (plotting) and live
panels (widgets). Notebooks import from here; nothing here imports a notebook."""
