"""The anatomy of GUIDE §2-3 is enforced: every notebook and lesson card has its parts, stored outputs, no errors."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SLUGS = [nb.stem for nb in NOTEBOOKS]
CJK = re.compile(r"[\u4e00-\u9fff]")
ABS_PATH = re.compile(r"(/(work|root|tmp|home|Users)/[A-Za-z]|[A-Z]:\\\\)")
NOTEBOOK_SECTIONS = ["30-second answer", "What the notes say", "Follow-up", "Exercises", "Takeaways", "References"]
CARD_SECTIONS = ["30-second answer", "中文速答", "Key equations", "whiteboard", "Common wrong answers",
                 "Follow-up", "classroom plan"]


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def md_text(nb):
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_there_are_notebooks():
    assert "00_start_here" in SLUGS and "04_vanishing_gradients" in SLUGS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=SLUGS)
def test_title_has_number_question_and_the_notes_chinese_line(path):
    nb = load(path)
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert first.startswith(f"# {path.stem[:2]} · "), first[:60]
    if path.stem != "00_start_here":
        assert CJK.search(first), "the title cell quotes the notes' own Chinese line"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=SLUGS)
def test_sections_present(path):
    headings = [ln for ln in md_text(load(path)).splitlines() if ln.startswith("#")]
    sections = NOTEBOOK_SECTIONS if path.stem != "00_start_here" else ["30-second answer", "References"]
    for section in sections:
        assert any(section.lower() in h.lower() for h in headings), f"missing section '{section}'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=SLUGS)
def test_check_cells_and_live_panel(path):
    nb = load(path)
    sources = ["".join(c["source"]) for c in code_cells(nb)]
    assert any(re.search(r"^\s*assert ", s, re.M) for s in sources), "no check cell with an assert"
    if path.stem != "00_start_here":
        assert any(re.search(r"widgets\.\w+_panel\(", s) for s in sources), "no live panel from helpers.widgets"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=SLUGS)
def test_no_helper_code_defined_in_notebooks(path):
    """Shared logic lives in helpers/ with a test: notebooks define no functions or classes."""
    for src in ("".join(c["source"]) for c in code_cells(load(path))):
        assert not re.search(r"^\s*(def|class) \w+", src, re.M), src[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=SLUGS)
def test_outputs_stored_in_order_without_errors(path):
    nb = load(path)
    counts = [c["execution_count"] for c in code_cells(nb)]
    assert all(isinstance(n, int) for n in counts), "run the notebook top to bottom and save its outputs"
    assert counts == list(range(1, len(counts) + 1)), f"execution counts out of order: {counts}"
    for c in code_cells(nb):
        assert not [o for o in c["outputs"] if o["output_type"] == "error"], "stored error output"
        assert not [o for o in c["outputs"] if o.get("name") == "stderr"], "stored stderr (a warning?)"
    assert any(o.get("data", {}).get("image/png") for c in code_cells(nb) for o in c["outputs"]) \
        or path.stem == "00_start_here", "no stored figure: GitHub and nbviewer would show no plot"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=SLUGS)
def test_no_absolute_paths(path):
    text = path.read_text(encoding="utf-8")
    assert not ABS_PATH.search(text), ABS_PATH.search(text).group(0)


@pytest.mark.parametrize("slug", SLUGS)
def test_lesson_card(slug):
    card = ROOT / "lessons" / f"{slug}.md"
    assert card.exists(), f"lessons/{slug}.md is missing"
    text = card.read_text(encoding="utf-8")
    assert f"../notebooks/{slug}.ipynb" in text, "the card links its notebook"
    if slug != "00_start_here":
        for section in CARD_SECTIONS:
            assert section.lower() in text.lower(), f"card misses '{section}'"


def test_readme_and_start_notebook_link_every_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = md_text(load(ROOT / "notebooks" / "00_start_here.ipynb"))
    for slug in SLUGS:
        assert f"notebooks/{slug}.ipynb" in readme, f"README's table misses {slug}"
        if slug != "00_start_here":
            assert f"{slug}.ipynb" in start, f"00_start_here's map misses {slug}"
    for link in re.findall(r"notebooks/(\d\d_\w+)\.ipynb", readme):
        assert link in SLUGS, f"README links a notebook that does not exist: {link}"
    rows = re.findall(r"^\| (\d\d) \|", readme, re.M)
    assert rows == [f"{i:02d}" for i in range(18)], "README's table lists the 18 questions of QUESTIONS.md"
