"""helpers.memory: the unrolled sum, the influence profile's regimes, and the recall model vs autograd."""
import numpy as np
import pytest
import torch

from helpers import cells, flow, memory, tasks


def test_linear_unroll_sums_to_the_identity_rnn():
    rng = np.random.default_rng(0)
    p = cells.init_params("rnn", 3, 5, rng)
    p["weight_hh"] *= 1.7  # not contracting: every term still has to be right
    x, h0 = rng.normal(size=(9, 2, 3)), rng.normal(size=(2, 5))
    terms = memory.linear_unroll(x, h0, p)
    _, h_T, _ = cells.rnn_forward(x, h0, p, "identity")
    assert terms.shape == (10, 2, 5)
    np.testing.assert_allclose(terms.sum(0), h_T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(terms[-1], x[-1] @ p["weight_ih"].T + p["bias_ih"] + p["bias_hh"], atol=1e-12)
    W = p["weight_hh"]
    np.testing.assert_allclose(terms[0], h0 @ np.linalg.matrix_power(W, 9).T, atol=1e-10)
    np.testing.assert_allclose(terms[1], (x[0] @ p["weight_ih"].T + p["bias_ih"] + p["bias_hh"])
                               @ np.linalg.matrix_power(W, 8).T, atol=1e-10)


def test_linear_unroll_validates():
    p = cells.init_params("rnn", 3, 5)
    with pytest.raises(ValueError, match="input_size"):
        memory.linear_unroll(np.zeros((4, 2, 2)), np.zeros((2, 5)), p)
    with pytest.raises(ValueError, match="h0"):
        memory.linear_unroll(np.zeros((4, 2, 3)), np.zeros((1, 5)), p)


@pytest.mark.parametrize("lam", [0.5, 1.0, 1.3])
def test_orthogonal_linear_profile_is_exactly_lambda_to_the_distance(lam):
    r = memory.influence_profile(T=30, lambda_1=lam, nonlinearity="identity", init="orthogonal")
    np.testing.assert_allclose(r["relative"], lam ** r["steps_back"], rtol=1e-8)
    assert r["lambda_1"] == pytest.approx(lam)


def test_profile_regimes_and_shapes():
    con = memory.influence_profile(T=20, lambda_1=0.5, nonlinearity="tanh")
    exp = memory.influence_profile(T=20, lambda_1=2.0, nonlinearity="tanh")
    assert con["influence"].shape == con["relative"].shape == con["steps_back"].shape == (20,)
    assert con["relative"][0] == 1.0 and con["relative"][-1] < 1e-3 < 1 < exp["relative"][-1]
    assert np.all(np.diff(np.log10(con["relative"])) < 0)  # contracting: every step back loses influence


@pytest.mark.parametrize("nl", sorted(flow.GAMMA))
@pytest.mark.parametrize("lam", [0.25, 3.0])
def test_profile_extremes_are_finite(nl, lam):
    for init in flow.INITS:
        r = memory.influence_profile(T=50, lambda_1=lam, nonlinearity=nl, init=init)
        assert np.all(np.isfinite(r["relative"])) and np.all(r["relative"] >= 0), (nl, lam, init)


def test_profile_validates():
    with pytest.raises(ValueError, match="T must be"):
        memory.influence_profile(T=1)
    with pytest.raises(ValueError, match="nonlinearity"):
        memory.influence_profile(nonlinearity="gelu")
    with pytest.raises(ValueError, match="init"):
        memory.influence_profile(init="he")
    with pytest.raises(ValueError, match="lambda_1"):
        memory.influence_profile(lambda_1=0.0)


def test_recall_rnn_is_a_readout_of_the_numpy_last_state():
    torch.manual_seed(0)
    model = memory.RecallRNN(4, hidden_size=6).double()
    x, _ = tasks.delayed_recall(5, 7, 2, 4, rng=0)  # (5, 7, 4)
    p = cells.params_from_torch(model.rnn)
    _, h_T, _ = cells.rnn_forward(x.transpose(1, 0, 2), np.zeros((5, 6)), p)
    ref = h_T @ model.readout.weight.detach().numpy().T + model.readout.bias.detach().numpy()
    with torch.no_grad():
        ours = model(torch.from_numpy(x).double()).numpy()
    assert ours.shape == (5, 4)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_recall_accuracy_counts_argmax_hits():
    torch.manual_seed(0)
    model = memory.RecallRNN(3, hidden_size=4)
    x, _ = tasks.delayed_recall(50, 6, 1, 3, rng=1)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    assert memory.recall_accuracy(model, x, pred) == 1.0
    assert memory.recall_accuracy(model, x, (pred + 1) % 3) == 0.0
    with pytest.raises(ValueError, match="same number"):
        memory.recall_accuracy(model, x, pred[:-1])
    with pytest.raises(ValueError, match="x must have 3 dims"):
        memory.recall_accuracy(model, x[0], pred)


def test_output_influence_matches_autograd_jacobians():
    torch.manual_seed(0)
    model = memory.RecallRNN(3, hidden_size=5).double()
    x, _ = tasks.delayed_recall(4, 6, 1, 3, rng=2)
    xt = torch.from_numpy(x).double()
    sq = np.zeros(6)
    for n in range(4):
        J = torch.func.jacrev(lambda s: model(s[None])[0])(xt[n]).detach().numpy()  # (K, T, K)
        sq += (J ** 2).sum(axis=(0, 2))
    ref = np.sqrt(sq / 4)[::-1]  # by steps back
    np.testing.assert_allclose(memory.output_influence(model, x), ref, rtol=1e-10)
