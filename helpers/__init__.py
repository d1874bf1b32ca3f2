"""RNN Interview Lab helpers.

Shared: cells (numpy RNN/LSTM/GRU, forward and backward), gradcheck (finite differences), flow (gradient-flow
measurements), tasks (synthetic data, the shipped corpus), training (a small torch loop with clipping),
plotting (figure style) and widgets (the live panels). Per lesson: memory (01), bptt (02), cliff (03),
remedies (05), receptive (06), charmodel (07). Notebooks import from here; nothing here imports a notebook.
"""
