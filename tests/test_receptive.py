"""helpers.receptive: the receptive-field formula against torch autograd, parameter counts, tasks and models."""
import functools

import numpy as np
import pytest
import torch

from helpers import receptive as R
from helpers import tasks, training
from helpers.widgets import l06_receptive


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster than two fighting over a shared 2-core machine, and reproducible."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# (kernel sizes, dilations): plain, WaveNet doubling, wide kernel, mixed per layer, holes (d grows faster than k)
CONFIGS = [(2, [1]), (3, [1, 1, 1]), (2, [1, 2, 4, 8]), (3, [1, 2, 4]), ([3, 2, 5], [1, 2, 3]), (2, [1, 3, 9])]


# ----------------------------------------------------------------------------- the pure formula

@pytest.mark.parametrize("k,d,rf", [(2, [1], 2), (3, [1, 1, 1], 7), (2, [1, 2, 4, 8], 16), (3, [1, 2, 4], 15),
                                    ([3, 2, 5], [1, 2, 3], 17), (2, [1, 3, 9], 14), (1, [5, 7], 1)])
def test_receptive_field_formula(k, d, rf):
    assert R.receptive_field(k, d) == rf
    assert R.reachable_lags(k, d).max() == rf - 1      # the formula is the span of the reachable lags


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("L", [1, 3, 5])
def test_dilations_k_to_the_l_cover_k_to_the_L_without_holes(k, L):
    d = R.dilation_schedule(L, k)
    assert d == [k ** l for l in range(L)]
    assert R.receptive_field(k, d) == k ** L
    np.testing.assert_array_equal(R.reachable_lags(k, d), np.arange(k ** L))


def test_growth_faster_than_the_kernel_leaves_holes():
    np.testing.assert_array_equal(R.reachable_lags(2, [1, 3, 9]), [0, 1, 3, 4, 9, 10, 12, 13])
    g = R.reach_grid(2, [1, 3, 9])
    assert (g["rf"], g["n_reached"], g["holes"]) == (14, 8, 6)


def test_no_dilation_grows_linearly():
    assert [R.receptive_field(3, R.dilation_schedule(L, 1)) for L in (1, 2, 5)] == [3, 5, 11]


def test_layer_reach_and_grid():
    reach = R.layer_reach(2, [1, 2, 4])
    assert [r.tolist() for r in reach] == [list(range(8)), [0, 2, 4, 6], [0, 4], [0]]
    g = R.reach_grid(2, [1, 2, 4])
    W = g["grid"].shape[1]
    assert g["grid"].shape == (4, W) and W >= g["rf"] + 2 and g["lags"][-1] == 0 and g["lags"][0] == W - 1
    for level, lags in enumerate(reach):
        np.testing.assert_array_equal(np.sort(g["lags"][g["grid"][level] == 1.0]), lags)


@pytest.mark.parametrize("k,d", CONFIGS)
def test_reach_taps_connect_reached_units_through_the_kernel_taps(k, d):
    ks, ds = R._layers(k, d)
    reach, taps = R.layer_reach(k, d), R.reach_taps(k, d)
    assert len(taps) == len(ds)
    for l, (t, kl, dl) in enumerate(zip(taps, ks, ds), start=1):
        assert t.shape == (kl * len(reach[l]), 2) and t.dtype == np.int64
        assert set(t[:, 1]) == set(reach[l].tolist())                     # every reached unit, k_l taps each
        assert set(t[:, 0]) == set(reach[l - 1].tolist())                 # ... feeding exactly the level below
        assert set((t[:, 0] - t[:, 1]).tolist()) == set((dl * np.arange(kl)).tolist())
        assert len({tuple(row) for row in t.tolist()}) == len(t)          # no tap twice


def test_reach_taps_of_the_wavenet_stack():
    taps = R.reach_taps(2, [1, 2])                                        # RF 4
    assert taps[1].tolist() == [[0, 0], [2, 0]]                           # top output <- level 1 at lags 0 and 2
    assert taps[0].tolist() == [[0, 0], [1, 0], [2, 2], [3, 2]]


def test_receptive_mask_is_cut_at_the_start():
    np.testing.assert_array_equal(R.receptive_mask(5, 2, [1, 2, 4]), np.ones(5, bool))  # RF 8 > T 5
    np.testing.assert_array_equal(R.receptive_mask(10, 2, [1, 2]), [0] * 6 + [1] * 4)


@pytest.mark.parametrize("call,match", [
    (lambda: R.receptive_field(2, []), "dilations must hold"),
    (lambda: R.receptive_field([2, 3], [1]), "kernel_sizes and dilations"),
    (lambda: R.receptive_field(0, [1]), "kernel_size must be an int >= 1"),
    (lambda: R.receptive_field(2, [1, 0]), "dilation must be an int >= 1"),
    (lambda: R.dilation_schedule(0, 2), "n_layers"),
    (lambda: R.receptive_mask(0, 2, [1]), "T must be"),
    (lambda: R.TCN(3, 4, 2, [1], 2, activation="gelu"), "activation must be one of"),
    (lambda: R.RecurrentNet("elman", 3, 4, 2), "kind must be one of"),
    (lambda: R.recurrent_param_count("elman", 3, 4, 2), "kind must be one of"),
    (lambda: R.layers_to_cover(5, kernel_size=1), "kernel_size"),
])
def test_invalid_input_raises_a_value_error_naming_expected_and_got(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "Expected" in str(info.value) and "got" in str(info.value)


# ----------------------------------------------------------------------------- formula vs torch autograd

@pytest.mark.parametrize("activation", ["tanh", "relu", "identity"])
@pytest.mark.parametrize("k,d", CONFIGS)
def test_gradient_support_of_a_torch_conv_stack_is_the_formula(k, d, activation):
    training.set_seed(0)
    model = R.TCN(3, 8, k, d, 2, activation=activation)
    for T in (R.receptive_field(k, d) + 5, max(1, R.receptive_field(k, d) - 2)):  # longer and shorter than RF
        support = R.gradient_support(model, T, 3)
        np.testing.assert_array_equal(support, R.receptive_mask(T, k, d))
        if T > model.receptive_field:
            assert T - np.argmax(support) == model.receptive_field  # earliest input reached: RF steps back


def test_gradient_support_leaves_the_model_untouched():
    model = R.TCN(3, 4, 2, [1, 2], 2)
    before = [p.detach().clone() for p in model.parameters()]
    R.gradient_support(model, 6, 3)
    assert all(p.dtype == torch.float32 and torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_tcn_is_causal_and_blind_outside_its_receptive_field():
    training.set_seed(1)
    model = R.TCN(4, 8, 2, [1, 2], 3).double()                       # RF 4
    x = torch.randn(2, 12, 4, dtype=torch.float64)
    y = model(x)
    future = x.clone()
    future[:, 7:] += 1.0                                              # change steps 7.. only
    np.testing.assert_array_equal(model(future)[:, :7].detach(), y[:, :7].detach())
    old = x.clone()
    old[:, :8] = torch.randn(2, 8, 4, dtype=torch.float64)           # change everything before step 12 - 4
    np.testing.assert_array_equal(model(old)[:, -1].detach(), y[:, -1].detach())


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_recurrent_last_output_depends_on_the_first_input_for_any_T(kind):
    training.set_seed(0)
    model = R.RecurrentNet(kind, 3, 8, 2)
    for T in (1, 30, 300):
        g = R.gradient_magnitude(model, T, 3)
        assert g.shape == (T,) and np.all(g > 0)


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("k,d", CONFIGS)
def test_tcn_param_count_formula_and_no_dependence_on_T(k, d):
    model = R.TCN(5, 7, k, d, 3)
    assert R.count_params(model) == R.tcn_param_count(5, 7, k, d, 3)
    for T in (1, 50):
        assert model(torch.zeros(2, T, 5)).shape == (2, T, 3)
    assert R.count_params(model) == R.tcn_param_count(5, 7, k, d, 3)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_recurrent_param_count_formula(kind):
    model = R.RecurrentNet(kind, 5, 7, 3)
    assert R.count_params(model) == R.recurrent_param_count(kind, 5, 7, 3)
    assert model(torch.zeros(2, 9, 5)).shape == (2, 9, 3)


# ----------------------------------------------------------------------------- tasks, training, timing

def test_tcn_learns_the_local_rule_and_is_at_chance_beyond_its_receptive_field():
    local = functools.partial(tasks.local_sum_task, T=12, window=3)
    recall = functools.partial(tasks.delayed_recall, T=12, lag=6)
    accs = []
    for task in (local, recall):
        training.set_seed(0)
        model = R.TCN(4, 32, 2, [1, 2], 4)                             # RF 4: sees lags 0..3
        R.fit_last_step(model, task, steps=200, seed=0)
        accs.append(R.last_step_accuracy(model, *task(4000, rng=99)))
    assert accs[0] > 0.9
    assert abs(accs[1] - 0.25) < 0.03                                  # sd of the estimate at chance: 0.007


def test_fit_last_step_is_deterministic():
    task = functools.partial(tasks.delayed_recall, T=6, lag=2)
    losses = []
    for _ in range(2):
        training.set_seed(3)
        model = R.RecurrentNet("gru", 4, 8, 4)
        losses.append(R.fit_last_step(model, task, steps=15, seed=3).loss)
    np.testing.assert_array_equal(*losses)


def test_graph_depth_grows_with_T_for_an_rnn_and_not_for_a_conv_stack():
    rnn, tcn = R.RecurrentNet("rnn", 3, 4, 2), R.TCN(3, 4, 2, [1, 2, 4], 2)
    depth = {(name, T): R.graph_depth(m(torch.randn(1, T, 3, requires_grad=True)))
             for name, m in (("rnn", rnn), ("tcn", tcn)) for T in (8, 16, 32)}
    per_step = (depth["rnn", 16] - depth["rnn", 8]) / 8
    assert per_step >= 1 and depth["rnn", 32] - depth["rnn", 16] == 16 * per_step   # exactly linear in T
    assert depth["tcn", 8] == depth["tcn", 16] == depth["tcn", 32] < 10 * 3           # set by the 3 layers
    chain = torch.ones(1, requires_grad=True)
    y = chain
    for _ in range(5000):                                                 # deeper than the recursion limit
        y = y * 1.0
    assert R.graph_depth(y) == 5000


def test_graph_depth_validates():
    for bad in (torch.ones(3), torch.ones(3, requires_grad=True), np.ones(3)):   # no grad_fn: a leaf or no graph
        with pytest.raises(ValueError, match="output must be a tensor computed with autograd") as info:
            R.graph_depth(bad)
        assert "Expected" in str(info.value) and "got" in str(info.value)


def test_forward_time_and_layers_to_cover():
    assert R.forward_time(R.TCN(3, 4, 2, [1], 2), torch.zeros(1, 10, 3), repeats=3) > 0
    assert [R.layers_to_cover(lag) for lag in (0, 1, 3, 4, 6, 7, 8, 1023)] == [1, 1, 2, 3, 3, 3, 4, 10]
    assert R.layers_to_cover(8, kernel_size=3) == 2 and R.layers_to_cover(9, kernel_size=3) == 3
    for lag in range(200):
        L = R.layers_to_cover(lag)
        assert R.receptive_field(2, R.dilation_schedule(L, 2)) > lag
        assert L == 1 or R.receptive_field(2, R.dilation_schedule(L - 1, 2)) <= lag


# ----------------------------------------------------------------------------- the panel's binning

def test_tap_path_draws_whole_layers_from_the_top_within_the_budget():
    taps = R.reach_taps(2, [1, 2, 4])                                     # 2 + 4 + 8 taps, top layer first
    x, y, drawn = l06_receptive._tap_path(taps, max_taps=6)
    assert drawn == 2 and x.shape == y.shape == (3 * 6,)
    assert np.isnan(x[2::3]).all() and np.isfinite(x.reshape(-1, 3)[:, :2]).all()
    assert set(y[0::3].tolist()) == {1.0, 2.0} and set(y[1::3].tolist()) == {2.0, 3.0}   # child one level below
    assert l06_receptive._tap_path(taps, max_taps=1)[2] == 0
    assert l06_receptive._tap_path(taps)[2] == 3


def test_binning_keeps_the_fraction_reached():
    grid = R.reach_grid(5, R.dilation_schedule(8, 3))["grid"]         # 16 401 columns
    shown, s = l06_receptive._binned(grid)
    assert shown.shape[1] <= l06_receptive.MAX_COLS and s > 1
    np.testing.assert_allclose(shown.sum(1) * s, grid.sum(1))         # padding adds zeros only
    small = R.reach_grid(2, [1, 2])["grid"]
    assert l06_receptive._binned(small)[0] is small
