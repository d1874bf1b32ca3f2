"""helpers.tasks: each task has the layout its docstring promises, and each baseline is measured on generated data."""
import pathlib

import numpy as np
import pytest

from helpers import tasks

CORPUS = pathlib.Path(tasks.__file__).parent / "data" / "corpus.txt"


# ----------------------------------------------------------------------------- adding problem

def test_adding_problem_layout():
    n, T = 500, 11
    x, y = tasks.adding_problem(n, T, rng=1)
    assert x.shape == (n, T, 2) and y.shape == (n,)
    assert x.dtype == y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert np.all(markers[:, :T // 2].sum(1) == 1)   # exactly one marker in t < T//2
    assert np.all(markers[:, T // 2:].sum(1) == 1)   # and one in t >= T//2
    np.testing.assert_array_equal(y, (values * markers).sum(1))
    # every step of each half gets marked at some point: the markers are not stuck at fixed places
    assert np.all(markers.sum(0) > 0)


def test_adding_problem_constant_one_scores_one_sixth():
    """Predicting E[y] = 1 leaves MSE = Var(u1 + u2) = 1/6 (Arjovsky et al. 2016's 0.167 baseline)."""
    _, y = tasks.adding_problem(200_000, 20, rng=2)
    y = y.astype(np.float64)
    assert abs(y.mean() - 1.0) < 3e-3                 # 1 is the best constant
    mse = np.mean((y - 1.0) ** 2)
    assert abs(mse - 1 / 6) < 2e-3                    # sd of the estimate: sqrt(7/180 / n) = 4.4e-4
    assert np.mean((y - 0.9) ** 2) > mse + 5e-3       # and a nearby constant does worse


# ----------------------------------------------------------------------------- copy task

@pytest.mark.parametrize("T,K,L", [(1, 8, 10), (30, 8, 10), (100, 8, 10), (7, 3, 4)])
def test_copy_task_layout(T, K, L):
    x, y = tasks.copy_task(300, T, n_symbols=K, copy_len=L, rng=3)
    assert x.shape == y.shape == (300, T + 2 * L) and x.dtype == y.dtype == np.int64
    symbols = x[:, :L]
    assert symbols.min() == 1 and symbols.max() == K  # all of 1..K are drawn, nothing outside
    assert np.all(x[:, L:L + T - 1] == 0)              # T - 1 blanks
    assert np.all(x[:, L + T - 1] == K + 1)            # the delimiter
    assert np.all(x[:, L + T:] == 0)                   # L blanks while the model answers
    assert np.all(y[:, :T + L] == 0)
    np.testing.assert_array_equal(y[:, T + L:], symbols)


@pytest.mark.parametrize("T,K,L", [(1, 8, 10), (30, 8, 10), (100, 8, 10), (7, 3, 4)])
def test_copy_task_memoryless_baseline_measured_on_data(T, K, L):
    """Blank with probability 1 up to the delimiter, then uniform over 1..K: mean CE = L ln K / (T + 2L)."""
    x, y = tasks.copy_task(400, T, n_symbols=K, copy_len=L, rng=4)
    n, S = x.shape
    seen_delimiter = np.cumsum(x == K + 1, axis=1) > 0          # (n, S): the strategy reads only this
    after = seen_delimiter & (x != K + 1)                       # strictly after the delimiter step
    probs = np.zeros((n, S, K + 2))
    probs[~after, 0] = 1.0
    probs[after, 1:K + 1] = 1.0 / K
    p_target = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
    assert np.all(p_target > 0)                                 # the strategy never rules out a target
    ce = -np.mean(np.log(p_target))
    assert abs(ce - tasks.copy_task_baseline(T, K, L)) < 1e-12
    if (K, L) == (8, 10):
        assert abs(tasks.copy_task_baseline(T) - 10 * np.log(8) / (T + 20)) < 1e-15


# ----------------------------------------------------------------------------- delayed recall

@pytest.mark.parametrize("lag", [0, 1, 5, 11])
def test_delayed_recall_target_and_chance(lag):
    n, T, K = 40_000, 12, 4
    x, y = tasks.delayed_recall(n, T, lag, n_symbols=K, rng=5)
    assert x.shape == (n, T, K) and x.dtype == np.float32 and y.shape == (n,) and y.dtype == np.int64
    assert np.all(x.sum(-1) == 1) and set(np.unique(x)) == {0.0, 1.0}  # one-hot
    seen = x.argmax(-1)                                                # (n, T)
    np.testing.assert_array_equal(y, seen[:, T - 1 - lag])
    np.testing.assert_allclose(np.bincount(y, minlength=K) / n, 1 / K, atol=0.01)
    # reading any other step is chance (1/K): the answer is only at T - 1 - lag
    other = (T - 1 - lag + 1) % T
    assert abs(np.mean(seen[:, other] == y) - 1 / K) < 0.01


# ----------------------------------------------------------------------------- reproducibility

GENERATORS = {
    "adding": lambda rng: tasks.adding_problem(8, 10, rng=rng),
    "copy": lambda rng: tasks.copy_task(8, 10, rng=rng),
    "recall": lambda rng: tasks.delayed_recall(8, 10, 3, rng=rng),
    "chars": lambda rng: tasks.char_batches(np.arange(100), 10, 8, rng),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_seeded_and_deterministic(name):
    make = GENERATORS[name]
    same = all(np.array_equal(a, b) for a, b in zip(make(7), make(7)))
    other = all(np.array_equal(a, b) for a, b in zip(make(7), make(8)))
    gen = np.random.default_rng(7)
    advanced = all(np.array_equal(a, b) for a, b in zip(make(gen), make(gen)))  # a shared Generator moves on
    none_is_zero = all(np.array_equal(a, b) for a, b in zip(make(None), make(0)))
    assert same and not other and not advanced and none_is_zero


# ----------------------------------------------------------------------------- corpus

def test_corpus_is_shipped_and_fit_for_a_char_model():
    text = tasks.load_corpus()
    assert text == CORPUS.read_text(encoding="utf-8")
    assert 8_000 <= len(text.encode("utf-8")) <= 15_000
    assert text.isascii()
    stoi, itos = tasks.char_vocab(text)
    assert 40 <= len(itos) <= 90 and itos == sorted(itos)
    assert all(stoi[ch] == i for i, ch in enumerate(itos))
    assert set(".,;:?\"'()-") <= set(itos)                       # varied punctuation
    assert len(set(text.lower().split())) > 500                  # varied vocabulary
    ids = tasks.encode(text, stoi)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert tasks.decode(ids, itos) == text


def test_char_batches_are_next_character_windows():
    N, S = 50, 12
    data = np.arange(N)                         # the value of each id is its position: offsets are visible
    x, y = tasks.char_batches(data, S, 300, np.random.default_rng(6))
    assert x.shape == y.shape == (300, S) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(S))   # contiguous windows
    np.testing.assert_array_equal(y, x + 1)                     # targets: the next id
    assert x[:, 0].min() == 0 and x[:, 0].max() == N - S - 1    # every legal offset, the last one included
    x, y = tasks.char_batches(data[:S + 1], S, 5, np.random.default_rng(0))  # the shortest data: one window
    np.testing.assert_array_equal(y, np.tile(np.arange(1, S + 1), (5, 1)))


# ----------------------------------------------------------------------------- bad input

BAD = [
    ("adding n", lambda: tasks.adding_problem(0, 10), "Expected >= 1, got 0"),
    ("adding T", lambda: tasks.adding_problem(4, 1), "Expected >= 2, got 1"),
    ("adding float T", lambda: tasks.adding_problem(4, 10.0), "got 10.0"),
    ("copy T", lambda: tasks.copy_task(4, 0), "Expected >= 1, got 0"),
    ("copy copy_len", lambda: tasks.copy_task(4, 5, copy_len=0), "Expected >= 1, got 0"),
    ("baseline n_symbols", lambda: tasks.copy_task_baseline(5, n_symbols=0), "Expected >= 1, got 0"),
    ("recall lag = T", lambda: tasks.delayed_recall(4, 5, 5), "Expected 0..4, got 5"),
    ("recall lag < 0", lambda: tasks.delayed_recall(4, 5, -1), "Expected 0..4, got -1"),
    ("bad rng", lambda: tasks.adding_problem(4, 10, rng="seed"), "got str"),
    ("empty text", lambda: tasks.char_vocab(""), "Expected str of length >= 1"),
    ("unknown char", lambda: tasks.encode("abz", {"a": 0, "b": 1}), "got ['z']"),
    ("seq_len too long", lambda: tasks.char_batches(np.arange(10), 10, 2, 0), "Expected <= 9, got 10"),
    ("data not 1-D", lambda: tasks.char_batches(np.zeros((4, 4)), 2, 2, 0), "Expected 1 dim, got 2"),
    ("batch_size", lambda: tasks.char_batches(np.arange(10), 3, 0, 0), "Expected >= 1, got 0"),
]


@pytest.mark.parametrize("name,call,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_clear_value_error(name, call, message):
    with pytest.raises(ValueError, match="Expected") as e:
        call()
    assert message in str(e.value)


def test_local_sum_task_layout_and_label():
    x, y = tasks.local_sum_task(400, 9, window=3, n_symbols=5, rng=2)
    assert x.shape == (400, 9, 5) and x.dtype == np.float32 and y.shape == (400,) and y.dtype == np.int64
    symbols = x.argmax(-1)
    np.testing.assert_array_equal(x.sum(-1), 1.0)
    np.testing.assert_array_equal(y, symbols[:, -3:].sum(1) % 5)
    # same inputs as delayed_recall with the same seed: only the label rule differs
    x2, _ = tasks.delayed_recall(400, 9, 4, n_symbols=5, rng=2)
    np.testing.assert_array_equal(x, x2)


def test_local_sum_label_is_independent_of_each_single_symbol():
    """Like parity: P(y | one of the last symbols) is uniform, so no single input is a shortcut."""
    x, y = tasks.local_sum_task(40_000, 6, window=3, n_symbols=4, rng=3)
    last = x[:, -1].argmax(-1)
    table = np.histogram2d(last, y, bins=(4, 4))[0] / len(y)          # joint frequencies, each ~ 1/16
    assert np.abs(table - 1 / 16).max() < 0.01


def test_local_sum_task_rejects_a_window_longer_than_the_sequence():
    with pytest.raises(ValueError, match=r"window must be an int in \[1, 5\]. Expected"):
        tasks.local_sum_task(4, 5, window=6)
