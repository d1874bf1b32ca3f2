r"""Synthetic sequence tasks and a small character corpus: seeded, numpy in, numpy out.

Every task is batch-first, like torch's `batch_first=True`: x (N, T, ...), one row per sequence.
Every generator takes `rng`: a np.random.Generator, an int seed, or None (= seed 0), so a call is
reproducible. Floats are float32 and tokens int64, ready for `torch.from_numpy`.

    adding problem   x (N, T, 2), y (N,)      regression; needs two values kept over up to T steps.
                     Channel 0 holds values ~ U[0, 1], channel 1 marks one step in the first half and one
                     in the second; y = sum of the two marked values. Predicting the constant 1 (= E[y])
                     scores MSE = Var(u1 + u2) = 2 * 1/12 = 1/6: a model must beat 0.167 to have learned
                     anything. (Hochreiter & Schmidhuber 1997 §5.4; this variant and baseline: Arjovsky,
                     Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks", §4.2.)

    copy task        x, y (N, T + 2L) tokens   L symbols, T-1 blanks, a delimiter, L blanks; the target is
                     blank everywhere except the last L steps, which repeat the L symbols. A memoryless
                     model that outputs blank, then guesses uniformly, scores cross-entropy
                     L ln(K) / (T + 2L) (K symbols; K = 8, L = 10 gives 10 ln 8 / (T + 20)).
                     (Arjovsky et al. 2016 §4.1, after Hochreiter & Schmidhuber 1997.)

    delayed recall   x (N, T, K) one-hot, y (N,)   classify the symbol shown `lag` steps before the end.
                     The knob is the lag alone, so accuracy vs lag measures how far back a cell can
                     remember; chance is 1/K. (A minimal "information latching" task in the spirit of
                     Bengio, Simard & Frasconi 1994.)

    corpus           `load_corpus()` returns ~10 KB of English prose written for this project, small
                     enough for a character-level model (Karpathy's char-rnn, makemore) to learn in seconds.
"""
from importlib import resources

import numpy as np

BLANK = 0  # copy task: the blank token; symbols are 1..K and the delimiter is K + 1


# ----------------------------------------------------------------------------- validation

def _check_int(name, value, minimum, maximum=None):
    """value as an int in [minimum, maximum] (no upper limit if maximum is None), else ValueError."""
    bad = isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum
    if bad or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {span}. Expected {span}, got {value!r}")
    return int(value)


def _rng(rng):
    """None -> seed 0; int -> a fresh Generator with that seed; Generator -> itself."""
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator) or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a np.random.Generator, an int seed or None. Expected one of them, "
                     f"got {type(rng).__name__}")


# ----------------------------------------------------------------------------- tasks

def adding_problem(n, T, rng=None):
    """Adding problem, batch-first. -> x (n, T, 2) float32, y (n,) float32.

    x[:, :, 0] ~ U[0, 1); x[:, :, 1] is 0 except one 1 at a step t < T//2 and one at a step t >= T//2.
    y = the sum of the two marked values. Baseline: predicting 1 gives MSE 1/6.
    """
    n = _check_int("n", n, 1)
    T = _check_int("T (one marker in each half)", T, 2)
    rng = _rng(rng)
    values = rng.random((n, T), dtype=np.float32)                     # (n, T)
    first = rng.integers(0, T // 2, size=n)                           # (n,) a step in the first half
    second = rng.integers(T // 2, T, size=n)                          # (n,) a step in the second half
    rows = np.arange(n)
    markers = np.zeros((n, T), dtype=np.float32)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]                    # (n,)
    return np.stack([values, markers], axis=-1), y


def copy_task(n, T, n_symbols=8, copy_len=10, rng=None):
    """Copying memory task (Arjovsky et al. 2016 §4.1), batch-first. -> x, y (n, T + 2*copy_len) int64.

    Tokens: 0 blank, 1..n_symbols symbols, n_symbols + 1 delimiter (vocabulary size n_symbols + 2).
        x = [s_1 .. s_L] [0] * (T - 1) [delimiter] [0] * L
        y = [0] * (T + L)                          [s_1 .. s_L]
    After the delimiter the model has to output the L symbols it saw T + L steps earlier.
    """
    n = _check_int("n", n, 1)
    T = _check_int("T", T, 1)
    K = _check_int("n_symbols", n_symbols, 1)
    L = _check_int("copy_len", copy_len, 1)
    symbols = _rng(rng).integers(1, K + 1, size=(n, L))               # (n, L)
    x = np.full((n, T + 2 * L), BLANK, dtype=np.int64)
    y = np.full((n, T + 2 * L), BLANK, dtype=np.int64)
    x[:, :L] = symbols
    x[:, L + T - 1] = K + 1                                           # the delimiter
    y[:, -L:] = symbols
    return x, y


def copy_task_baseline(T, n_symbols=8, copy_len=10):
    """Mean cross-entropy (nats per step) of the memoryless strategy: copy_len * ln(n_symbols) / (T + 2*copy_len).

    Blank with probability 1 up to the delimiter (zero loss on T + copy_len steps), then uniform over the
    n_symbols symbols (ln n_symbols on each of the last copy_len steps).
    """
    T = _check_int("T", T, 1)
    K = _check_int("n_symbols", n_symbols, 1)
    L = _check_int("copy_len", copy_len, 1)
    return float(L * np.log(K) / (T + 2 * L))


def delayed_recall(n, T, lag, n_symbols=4, rng=None):
    """Recall the symbol shown `lag` steps before the end. -> x (n, T, K) float32 one-hot, y (n,) int64.

    Batch-first. Each step shows a symbol drawn uniformly from 0..K-1; y is the symbol at step T - 1 - lag
    (lag 0 = the last input). Chance accuracy is 1/K.
    """
    n = _check_int("n", n, 1)
    T = _check_int("T", T, 1)
    K = _check_int("n_symbols", n_symbols, 1)
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or not 0 <= lag < T:
        raise ValueError(f"lag must be an int in [0, T). Expected 0..{T - 1}, got {lag!r}")
    symbols = _rng(rng).integers(0, K, size=(n, T))                   # (n, T)
    x = np.eye(K, dtype=np.float32)[symbols]                          # (n, T, K)
    return x, symbols[:, T - 1 - lag].astype(np.int64)


def local_sum_task(n, T, window=3, n_symbols=4, rng=None):
    """Label = (sum of the last `window` symbols) mod K. -> x (n, T, K) float32 one-hot, y (n,) int64.

    Same inputs as delayed_recall (uniform symbols, one-hot, batch-first); only the label rule
    differs: it depends on the last `window` steps alone, and on all of them jointly (each symbol alone says
    nothing about the label, as in parity). Chance accuracy is 1/K.
    """
    n = _check_int("n", n, 1)
    T = _check_int("T", T, 1)
    K = _check_int("n_symbols", n_symbols, 1)
    window = _check_int("window", window, 1, T)
    symbols = _rng(rng).integers(0, K, size=(n, T))                   # (n, T)
    x = np.eye(K, dtype=np.float32)[symbols]                          # (n, T, K)
    return x, (symbols[:, T - window:].sum(1) % K).astype(np.int64)


# ----------------------------------------------------------------------------- character corpus

def load_corpus():
    """The project's character corpus (helpers/data/corpus.txt), as one str."""
    return resources.files("helpers").joinpath("data", "corpus.txt").read_text(encoding="utf-8")


def char_vocab(text):
    """-> (stoi {char: id}, itos [char]) over the sorted distinct characters of text."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty str. Expected str of length >= 1, got {text!r:.40}")
    itos = sorted(set(text))
    return {ch: i for i, ch in enumerate(itos)}, itos


def encode(text, stoi):
    """str -> ids (len(text),) int64."""
    unknown = sorted(set(text) - set(stoi))
    if unknown:
        raise ValueError(f"text must use only characters in stoi. Expected none outside it, got {unknown[:10]}")
    return np.array([stoi[ch] for ch in text], dtype=np.int64)


def decode(ids, itos):
    """ids (n,) -> str, the inverse of encode."""
    return "".join(itos[i] for i in np.asarray(ids).ravel())


def char_batches(data, seq_len, batch_size, rng):
    """Next-character batches from random offsets. data (N,) ids -> x, y (batch_size, seq_len) int64.

    y[:, t] is the id that follows x[:, t] in data: row b reads data[o : o + seq_len] and its targets
    data[o + 1 : o + seq_len + 1], with o uniform in [0, N - seq_len). Pass a Generator that lives
    across calls: an int seed gives the same batch every time.
    """
    data = np.asarray(data)
    if data.ndim != 1:
        raise ValueError(f"data must be 1-D token ids. Expected 1 dim, got {data.ndim} (shape {data.shape})")
    seq_len = _check_int("seq_len", seq_len, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    if seq_len >= len(data):
        raise ValueError(f"seq_len must be < len(data) (each target is the next id). "
                         f"Expected <= {len(data) - 1}, got {seq_len}")
    offsets = _rng(rng).integers(0, len(data) - seq_len, size=(batch_size, 1))  # (B, 1)
    idx = offsets + np.arange(seq_len)                                          # (B, seq_len)
    return data[idx].astype(np.int64), data[idx + 1].astype(np.int64)
