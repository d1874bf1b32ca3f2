"""helpers.charmodel: shapes and state carrying, the bigram baseline, the loss, temperature math, seeded sampling,
and a short training run that is deterministic and learns."""
import math
import warnings

import numpy as np
import pytest
import torch

from helpers import charmodel, tasks, training

TEXT = tasks.load_corpus()
STOI, ITOS = tasks.char_vocab(TEXT)
IDS = tasks.encode(TEXT, STOI)
V = len(ITOS)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny recurrent matmuls gain nothing from a second thread and lose a lot on a loaded machine
    (measured here: 60 training steps 2.4 s on one thread, 19 s on two under load 6)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

def small_model(kind="gru", seed=0, H=16):
    training.set_seed(seed)
    return charmodel.CharRNN(V, hidden_size=H, kind=kind, embed_size=8)


# ----------------------------------------------------------------------------- models

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_charrnn_shapes_and_state(kind):
    model = small_model(kind)
    x = torch.from_numpy(IDS[:3 * 20].reshape(3, 20))                  # (B, T)
    logits, state = model(x)
    assert logits.shape == (3, 20, V)
    h_n = state[0] if kind == "lstm" else state
    assert h_n.shape == (1, 3, 16)
    if kind == "lstm":
        assert state[1].shape == (1, 3, 16)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_carrying_the_state_equals_one_long_pass(kind):
    """What sampling and stateful training rely on: two chunks with the state passed on = one pass."""
    model = small_model(kind).double()
    x = torch.from_numpy(IDS[:40].reshape(2, 20))
    full, _ = model(x)
    first, state = model(x[:, :7])
    second, _ = model(x[:, 7:], state)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-12, rtol=0)


def test_charrnn_validates():
    with pytest.raises(ValueError, match="kind must be one of"):
        charmodel.CharRNN(V, kind="transformer")
    with pytest.raises(ValueError, match="vocab_size must be an int >= 2"):
        charmodel.CharRNN(1)
    with pytest.raises(ValueError, match=r"x must be an int64 tensor \(B, T\)"):
        small_model()(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"x must be an int64 tensor \(B, T\)"):
        small_model()(torch.zeros(3, dtype=torch.int64))


def test_bigram_model_is_the_conditional_distribution():
    model = charmodel.BigramModel(IDS, V, alpha=1e-6)
    probs = model.log_probs.double().exp()
    assert torch.allclose(probs.sum(1), torch.ones(V, dtype=torch.float64), atol=1e-6)
    # its loss on its own text is the empirical conditional entropy H(next | current)
    counts = np.zeros((V, V))
    np.add.at(counts, (IDS[:-1], IDS[1:]), 1.0)
    joint, cond = counts / counts.sum(), counts / np.maximum(counts.sum(1, keepdims=True), 1)
    seen = counts > 0
    h_cond = -np.sum(joint[seen] * np.log(cond[seen]))
    assert charmodel.evaluate(model, IDS) == pytest.approx(h_cond, abs=1e-4)
    assert h_cond < charmodel.unigram_entropy(IDS, V)                   # one character of context helps


def test_bigram_validates():
    with pytest.raises(ValueError, match="ids must lie in"):
        charmodel.BigramModel(np.array([0, 1, V]), V)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        charmodel.BigramModel(IDS, V, alpha=0)
    with pytest.raises(ValueError, match="ids must be integer token ids"):
        charmodel.BigramModel(IDS.astype(float), V)
    with pytest.raises(ValueError, match="at least one pair"):
        charmodel.BigramModel(IDS[:1], V)


# ----------------------------------------------------------------------------- loss and baselines

def test_char_loss_is_the_mean_negative_log_likelihood():
    model = small_model().double()
    x, y = tasks.char_batches(IDS, 12, 4, rng=3)
    loss = charmodel.char_loss(model, x, y)
    logits, _ = model(torch.from_numpy(x))
    logp = torch.log_softmax(logits, -1)                                 # (B, T, V)
    manual = -logp.gather(-1, torch.from_numpy(y)[..., None]).mean()
    assert loss.item() == pytest.approx(manual.item(), abs=1e-12)
    with pytest.raises(ValueError, match=r"x and y must both be \(B, T\)"):
        charmodel.char_loss(model, x, y[:, :-1])


def test_untrained_loss_is_near_ln_vocab():
    """Small random logits -> nearly uniform predictions -> loss ln V: the first sanity check of any LM."""
    model = small_model()
    assert charmodel.evaluate(model, IDS[:2000]) == pytest.approx(math.log(V), abs=0.1)


def test_evaluate_and_unigram_entropy():
    model = small_model()
    ids = IDS[100:400]
    x, y = torch.from_numpy(ids[None, :-1]), torch.from_numpy(ids[None, 1:])
    assert charmodel.evaluate(model, ids) == pytest.approx(charmodel.char_loss(model, x, y).item(), abs=1e-6)
    p = np.bincount(IDS, minlength=V) / len(IDS)
    p = p[p > 0]
    assert charmodel.unigram_entropy(IDS, V) == pytest.approx(-np.sum(p * np.log(p)), abs=1e-12)
    assert charmodel.unigram_entropy(np.zeros(5, dtype=np.int64), V) == 0.0
    with pytest.raises(ValueError, match="at least two characters"):
        charmodel.evaluate(model, IDS[:1])
    with pytest.raises(ValueError, match="model must be a CharRNN or a BigramModel"):
        charmodel.evaluate(torch.nn.GRU(3, 3), IDS)


def test_evaluate_in_windows_restarts_the_state_at_every_window():
    model = small_model().double()
    ids = IDS[500:700]                                                  # 199 predicted characters
    for seq_len in (1, 10, 64, 198):
        manual, count = 0.0, 0
        for start in range(0, len(ids) - 1, seq_len):                   # each window alone, from h_0 = 0
            x, y = ids[start:start + seq_len], ids[start + 1:start + seq_len + 1]
            x = x[:len(y)]
            manual += charmodel.char_loss(model, x[None], y[None]).item() * len(y)
            count += len(y)
        assert count == len(ids) - 1
        assert charmodel.evaluate(model, ids, seq_len=seq_len) == pytest.approx(manual / count, abs=1e-12)
    assert charmodel.evaluate(model, ids, seq_len=199) == pytest.approx(charmodel.evaluate(model, ids), abs=1e-12)
    assert charmodel.evaluate(model, ids, seq_len=10) != pytest.approx(charmodel.evaluate(model, ids), abs=1e-6)
    bigram = charmodel.BigramModel(IDS, V)                              # no state: windows change nothing
    assert charmodel.evaluate(bigram, ids, seq_len=7) == pytest.approx(charmodel.evaluate(bigram, ids), abs=1e-6)
    with pytest.raises(ValueError, match="seq_len must be an int >= 1"):
        charmodel.evaluate(model, ids, seq_len=0)


# ----------------------------------------------------------------------------- temperature

def test_temperature_one_is_softmax_and_shift_invariant():
    z = np.random.default_rng(0).normal(size=(4, V)) * 3
    p = charmodel.temperature_probs(z, 1.0)
    assert np.allclose(p, torch.softmax(torch.tensor(z), -1).numpy(), atol=1e-15)
    assert np.allclose(charmodel.temperature_probs(z + 100.0, 0.7), charmodel.temperature_probs(z, 0.7), atol=1e-15)
    assert np.allclose(p.sum(-1), 1.0)
    assert np.allclose(charmodel.temperature_probs(torch.tensor(z), 1.0), p, atol=1e-15)


def test_temperature_keeps_the_ranking_and_orders_the_entropy():
    z = np.random.default_rng(1).normal(size=V) * 2
    taus = [0.05, 0.1, 0.3, 0.7, 1.0, 1.5, 3.0, 10.0]
    ents = [charmodel.entropy(charmodel.temperature_probs(z, t)) for t in taus]
    assert all(a < b for a, b in zip(ents, ents[1:]))                   # entropy rises strictly with tau
    for t in taus:
        p = charmodel.temperature_probs(z, t)
        assert np.array_equal(np.argsort(-p, kind="stable"), np.argsort(-z, kind="stable"))


def test_temperature_limits_without_warnings():
    z = np.array([0.0, 1000.0, -1000.0, 999.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cold = charmodel.temperature_probs(z, 1e-3)                     # (z - max) / tau = -1e6: underflows to 0
        hot = charmodel.temperature_probs(z, 1e9)
    assert np.array_equal(cold, [0.0, 1.0, 0.0, 0.0])                    # tau -> 0: the argmax, one-hot
    assert np.allclose(hot, 0.25, atol=1e-6)                              # tau -> inf: uniform
    assert charmodel.entropy(cold) == 0.0 and charmodel.entropy(hot) == pytest.approx(math.log(4), abs=1e-6)


@pytest.mark.parametrize("tau", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_temperature_validates(tau):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        charmodel.temperature_probs(np.zeros(3), tau)


def test_temperature_probs_and_entropy_validate_arrays():
    with pytest.raises(ValueError, match="logits must be finite"):
        charmodel.temperature_probs(np.array([0.0, np.inf]), 1.0)
    with pytest.raises(ValueError, match="logits must have a last axis"):
        charmodel.temperature_probs(np.float64(1.0), 1.0)
    with pytest.raises(ValueError, match="p must be an array of finite probabilities"):
        charmodel.entropy(np.array([0.5, -0.1]))
    assert charmodel.entropy(np.full(V, 1 / V)) == pytest.approx(math.log(V), abs=1e-12)


# ----------------------------------------------------------------------------- sampling

def test_sampling_is_seeded():
    model = small_model()
    prompt = tasks.encode("The ", STOI)
    a = charmodel.sample(model, prompt, 50, temperature=0.9, seed=5)
    b = charmodel.sample(model, prompt, 50, temperature=0.9, seed=5)
    c = charmodel.sample(model, prompt, 50, temperature=0.9, seed=6)
    assert a.shape == (50,) and a.dtype == np.int64 and a.min() >= 0 and a.max() < V
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    torch.manual_seed(123)                                               # torch's global RNG plays no part
    assert np.array_equal(a, charmodel.sample(model, prompt, 50, temperature=0.9, seed=5))
    assert charmodel.sample(model, prompt, 0).shape == (0,)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cold_sampling_is_greedy_decoding(kind):
    """tau -> 0 picks the argmax each step: the same text as re-reading the growing prefix and taking the argmax."""
    model = small_model(kind).double()
    ids = list(tasks.encode("A recurrent", STOI))
    fast = charmodel.sample(model, np.array(ids), 25, temperature=1e-4, seed=0)
    for _ in range(25):
        ids.append(int(np.argmax(charmodel.next_char_logits(model, np.array(ids)))))
    assert np.array_equal(fast, ids[-25:])


def test_sampling_frequencies_match_the_probabilities():
    model = charmodel.BigramModel(IDS, V)
    prompt = tasks.encode("e", STOI)
    for tau in (0.5, 1.0, 2.0):
        p = charmodel.temperature_probs(charmodel.next_char_logits(model, prompt), tau)
        draws = np.array([charmodel.sample(model, prompt, 1, tau, seed=s)[0] for s in range(3000)])
        freq = np.bincount(draws, minlength=V) / len(draws)
        assert np.max(np.abs(freq - p)) < 0.03, tau                      # 3000 draws: std of a frequency <= 0.009


def test_one_thread_restores_the_setting():
    torch.set_num_threads(2)
    with charmodel.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with charmodel.one_thread():
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)                                             # the module fixture's setting


def test_sampling_validates():
    model = small_model()
    with pytest.raises(ValueError, match="prompt_ids must not be empty"):
        charmodel.sample(model, np.array([], dtype=np.int64), 5)
    with pytest.raises(ValueError, match="prompt_ids must lie in"):
        charmodel.sample(model, np.array([V]), 5)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        charmodel.sample(model, np.array([1]), -1)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        charmodel.sample(model, np.array([1]), 3, temperature=0.0)
    with pytest.raises(ValueError, match="prompt_ids must not be empty"):
        charmodel.next_char_logits(model, np.array([], dtype=np.int64))


def test_temperature_view_is_consistent():
    model = small_model()
    prompt = tasks.encode("The hidden st", STOI)
    views = {tau: charmodel.temperature_view(model, prompt, tau, top_k=10, n_sample=20, seed=1) for tau in (0.2, 1.0, 2.0)}
    full = charmodel.temperature_probs(charmodel.next_char_logits(model, prompt), 0.2)
    v = views[0.2]
    assert np.array_equal(v["top"], np.argsort(-full)[:10])
    assert np.allclose(v["probs"], full[v["top"]]) and v["rest"] == pytest.approx(1 - full[v["top"]].sum())
    assert v["entropy"] == pytest.approx(charmodel.entropy(full))
    assert all(np.array_equal(w["top"], v["top"]) for w in views.values())       # same ranking at every tau
    assert np.allclose(views[1.0]["probs"], views[1.0]["probs_1"])
    assert views[1.0]["entropy"] == pytest.approx(v["entropy_1"])
    assert views[0.2]["entropy"] < views[1.0]["entropy"] < views[2.0]["entropy"]
    assert len(charmodel.temperature_view(model, prompt, 1.0, top_k=500)["top"]) == V   # k capped at V


def test_text_stats():
    assert charmodel.text_stats(TEXT[:500], TEXT) == {"real_words": 1.0, "distinct_ngrams": pytest.approx(
        len({TEXT[i:i + 8] for i in range(493)}) / 493)}
    loop = charmodel.text_stats("the cat " * 20, "a dog", n=8)
    assert loop["real_words"] == 0.0 and loop["distinct_ngrams"] == pytest.approx(8 / 153)
    assert charmodel.text_stats("12345678", "x")["real_words"] == 0.0       # no words at all
    with pytest.raises(ValueError, match="at least one n-gram"):
        charmodel.text_stats("abc", TEXT, n=8)
    with pytest.raises(ValueError, match="text and reference must be str"):
        charmodel.text_stats(b"abcdefghij", TEXT)


# ----------------------------------------------------------------------------- training

def test_training_is_deterministic_and_learns():
    runs = []
    for _ in range(2):
        model = small_model(H=32)
        history = charmodel.train_char_model(model, IDS, steps=60, seq_len=32, batch_size=16, lr=1e-2, seed=0)
        runs.append((history.loss, charmodel.evaluate(model, IDS[:3000])))
    (loss_a, eval_a), (loss_b, eval_b) = runs
    assert np.array_equal(loss_a, loss_b) and eval_a == eval_b
    assert loss_a[0] == pytest.approx(math.log(V), abs=0.15)             # starts at the uniform baseline
    assert eval_a < charmodel.unigram_entropy(IDS, V)                    # 60 steps: already beats no-context


def test_train_char_model_validates():
    with pytest.raises(ValueError, match="ids must lie in"):
        charmodel.train_char_model(small_model(), np.array([0, 1, V, 2] * 20), steps=1, seq_len=4, batch_size=2)
    with pytest.raises(ValueError, match="seq_len must be < len"):
        charmodel.train_char_model(small_model(), IDS[:10], steps=1, seq_len=10, batch_size=2)


# ----------------------------------------------------------------------------- the panel's compute

def test_sampling_panel_takes_a_trained_model_and_rejects_another_vocabulary():
    from helpers import widgets
    from helpers.plotting import figure
    panel = widgets.sampling_panel(small_model())
    assert bytes(panel.image.value).startswith(b"\x89PNG")
    fig, _ = figure()
    with pytest.raises(ValueError, match="model.vocab_size must match"):
        widgets.draw_sampling(fig, temperature=1.0, prompt="The ", seed=0, model=charmodel.CharRNN(V + 1, 8))
