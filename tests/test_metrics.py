"""Benchmark metrics against worked examples from the benchmarks' own definitions.

Expected values are computed by hand in the comments, from: the VQA evaluation page
(visualqa.org/evaluation.html) and its vqaEval.py; the TextVQA evaluator used by LLaVA
(m4c_evaluator.py); ANLS (Biten et al. 2019, ST-VQA) as scored by the DocVQA evaluation script;
ChartQA relaxed accuracy (Masry et al. 2022, "within 5% of the gold answer"); POPE's evaluate.py;
MME's eval_tool calculation.py; spec §4.3 for EntityGrid-QA.
"""

import math

import pytest

from vlm_jax.evaluate.metrics import (
    anls,
    entitygrid_scores,
    extract_choice,
    levenshtein_distance,
    mme_scores,
    pope_scores,
    relaxed_accuracy,
    textvqa_accuracy,
    vqa_accuracy,
)
from vlm_jax.evaluate.vqa_normalize import normalize_textvqa_answer, normalize_vqa_answer

# ----------------------------------------------------------------------------- VQA normalisation


@pytest.mark.parametrize("raw, normalized", [
    ("Yes", "yes"),                 # "Making all characters lowercase"
    ("dog.", "dog"),                # "Removing periods except if it occurs as decimal"
    ("2.5", "2.5"),
    ("two", "2"),                   # "Converting number words to digits"
    ("None", "0"),                  # manual map: none -> 0
    ("twenty two", "twenty 2"),     # the map stops at "ten": "twenty" stays, "two" -> "2"
    ("a man", "man"),               # "Removing articles (a, an, the)"
    ("The Dog.", "dog"),
    ("dont", "don't"),              # "convert 'dont' to 'don't'"
    ("red/blue", "red blue"),       # punctuation -> space
    ("girl's", "girl's"),           # apostrophe kept (possessives)
    ("2:50 pm", "2:50 pm"),         # colon kept (times)
    ("100,978", "100978"),          # "convert 100,978 to 100978"
    ("1,000", "1000"),
    ("red, blue", "red blue"),      # ", " touches a space: comma deleted, no extra space
    ("yes!", "yes"),
    (" cat\tdog\n", "cat dog"),     # tabs/newlines -> spaces, stripped
])
def test_vqa_normalization_examples_from_evaluation_page(raw, normalized):
    assert normalize_vqa_answer(raw) == normalized


def test_textvqa_normalization_prestep():
    # m4c_evaluator word_tokenize: commas and '?' deleted, "'s" split off before the VQA steps.
    assert normalize_textvqa_answer("red,blue") == "redblue"
    assert normalize_textvqa_answer("girl's") == "girl 's"
    assert normalize_textvqa_answer("What?") == "what"


# ----------------------------------------------------------------------------- VQA accuracy


@pytest.mark.parametrize("n_matching, expected", [
    # 10 answers, m of them match. Leaving out a matching answer leaves m-1 matches (m subsets),
    # leaving out another leaves m (10-m subsets); acc = mean of min(matches/3, 1).
    (0, 0.0),
    (1, 0.3),   # (1 * 0 + 9 * 1/3) / 10 = 3/10
    (2, 0.6),   # (2 * 1/3 + 8 * 2/3) / 10 = (2/3 + 16/3) / 10 = 6/10
    (3, 0.9),   # (3 * 2/3 + 7 * 1) / 10 = (2 + 7) / 10
    (4, 1.0),   # (4 * 1 + 6 * 1) / 10
])
def test_vqa_accuracy_ten_answers(n_matching, expected):
    answers = ["man"] * n_matching + ["woman"] * (10 - n_matching)
    assert vqa_accuracy("A man.", answers) == pytest.approx(expected, abs=1e-12)


def test_vqa_accuracy_normalizes_answers_too():
    # "Dont" and "don't" both normalise to "don't": 3 matches of 10 -> 0.9 (see table above).
    answers = ["Dont", "don't", "don't"] + ["no"] * 7
    assert vqa_accuracy("dont", answers) == pytest.approx(0.9)
    # "two" -> "2": 4 matches -> 1.0
    assert vqa_accuracy("2", ["two", "2", "Two", "two."] + ["3"] * 6) == pytest.approx(1.0)


def test_vqa_accuracy_other_lengths():
    # 5 answers, 3 match: (3 * 2/3 + 2 * 1) / 5 = 4/5
    assert vqa_accuracy("cat", ["cat", "cat", "cat", "dog", "dog"]) == pytest.approx(0.8)
    # 2 answers, both match: each 1-answer subset has 1 match -> 1/3
    assert vqa_accuracy("cat", ["cat", "cat"]) == pytest.approx(1 / 3)
    # 1 answer: exact match after normalisation
    assert vqa_accuracy("The cat.", ["cat"]) == 1.0
    assert vqa_accuracy("dog", ["cat"]) == 0.0
    with pytest.raises(ValueError):
        vqa_accuracy("cat", [])


def test_textvqa_accuracy_differs_from_vqa_on_commas():
    answers = ["red blue"] * 10
    assert vqa_accuracy("red,blue", answers) == 1.0       # comma -> space
    assert textvqa_accuracy("red,blue", answers) == 0.0   # comma deleted -> "redblue"


# ----------------------------------------------------------------------------- ANLS


def test_levenshtein_textbook_examples():
    assert levenshtein_distance("kitten", "sitting") == 3  # k->s, e->i, +g
    assert levenshtein_distance("flaw", "lawn") == 2       # -f, +n
    assert levenshtein_distance("", "abc") == 3
    assert levenshtein_distance("abc", "abc") == 0


def test_anls_worked_examples():
    assert anls("Paris", ["paris"]) == 1.0
    assert anls("  New   York ", ["new york"]) == 1.0           # lowercased, whitespace collapsed
    # kitten vs sitting: NL = 3/7 < 0.5 -> 1 - 3/7 = 4/7
    assert anls("sitting", ["kitten"]) == pytest.approx(4 / 7)
    # NL = 2/4 = 0.5 -> similarity 0.5 is not below the threshold and is kept
    assert anls("abxy", ["abcd"]) == pytest.approx(0.5)
    # NL = 3/5 -> 0.4 < 0.5 -> 0
    assert anls("axyze", ["abcde"]) == 0.0
    # max over answers: flaw/lawn NL 2/4 -> 0.5; flaw/flaws NL 1/5 -> 0.8
    assert anls("flaw", ["lawn", "flaws"]) == pytest.approx(0.8)
    # DocVQA script divides by the raw lengths: "ab  c" (5 chars) vs "abd": distance("ab c",
    # "abd") = 2 -> NL = 2/5 -> 0.6
    assert anls("ab  c", ["abd"]) == pytest.approx(0.6)


# ----------------------------------------------------------------------------- ChartQA


@pytest.mark.parametrize("prediction, target, expected", [
    ("105", "100", 1.0),      # |105-100|/100 = 0.05 <= 0.05
    ("105.1", "100", 0.0),    # 0.051
    ("95", "100", 1.0),       # 0.05
    ("94.9", "100", 0.0),     # 0.051
    ("-21", "-20", 1.0),      # 1/20 = 0.05
    ("0.45", "45%", 1.0),     # 45% -> 0.45
    ("45%", "45", 0.0),       # 0.45 vs 45
    ("1049", "1,000", 1.0),   # 49/1000 = 0.049
    ("1,051", "1000", 0.0),   # 51/1000 = 0.051
    ("yes", "Yes", 1.0),      # non-numeric: case-insensitive exact match
    ("Brazil ", "Brazil", 1.0),
    ("Brazil.", "Brazil", 0.0),
    ("0.0", "0", 0.0),        # zero target: falls back to string match
    ("0", "0", 1.0),
])
def test_relaxed_accuracy(prediction, target, expected):
    assert relaxed_accuracy(prediction, target) == expected


# ----------------------------------------------------------------------------- multiple choice

OPTIONS = ["cat", "dog", "bird", "fish"]


@pytest.mark.parametrize("reply, letter", [
    ("A", "A"), ("b", "B"), ("(B)", "B"), ("C.", "C"), ("D)", "D"),
    ("The answer is D", "D"), ("Answer: (C)", "C"), ("The correct option is B.", "B"),
    ("B. dog", "B"), ("(C) bird", "C"), ("A, because it meows", "A"),
    ("dog", "B"), ("It is a Dog.", "B"), ("I would choose C", "C"),
    ("E", None),               # outside the 4 options
    ("A or B", None),          # two letters
    ("a cat or a dog", None),  # two option texts
    ("I don't know", None),
])
def test_extract_choice(reply, letter):
    assert extract_choice(reply, OPTIONS) == letter


def test_extract_choice_prefers_longest_option_text():
    options = ["cat", "black cat", "dog"]
    assert extract_choice("a black cat", options) == "B"
    assert extract_choice("cat", options) == "A"
    with pytest.raises(ValueError):
        extract_choice("A", [])


# ----------------------------------------------------------------------------- POPE


def test_pope_scores_hand_counted():
    predictions = [
        "Yes",                      # yes
        "No",                       # no
        "Yes, there is a dog.",     # yes
        "There is no dog.",         # no ("no" is a word)
        "Not at all",               # yes: only lowercase "not" counts in POPE's rule
        "yes",                      # yes
        "No.",                      # no
        "I do not see one",         # no
        "Yes. But no, not really",  # yes: only the first sentence is read
        "NO",                       # yes: "NO" is not "No"/"no"
    ]
    labels = ["yes", "no", "yes", "no", "no", "no", "yes", "yes", "no", "no"]
    # pairs: TP, TN, TP, TN, FP, FP, FN, FN, FP, FP -> TP=2 TN=2 FP=4 FN=2
    scores = pope_scores(predictions, labels)
    assert (scores["tp"], scores["tn"], scores["fp"], scores["fn"]) == (2, 2, 4, 2)
    assert scores["accuracy"] == pytest.approx(0.4)     # (2 + 2) / 10
    assert scores["precision"] == pytest.approx(1 / 3)  # 2 / (2 + 4)
    assert scores["recall"] == pytest.approx(0.5)       # 2 / (2 + 2)
    assert scores["f1"] == pytest.approx(0.4)           # 2 * 1/3 * 1/2 / (1/3 + 1/2) = 6/15
    assert scores["yes_ratio"] == pytest.approx(0.6)    # 6 "yes" of 10
    with pytest.raises(ValueError):
        pope_scores(["yes"], ["maybe"])
    with pytest.raises(ValueError):
        pope_scores(["yes", "no"], ["yes"])


# ----------------------------------------------------------------------------- MME


def _mme(category, image, prediction, answer):
    return {"category": category, "image": image, "prediction": prediction, "answer": answer}


def test_mme_scores_hand_counted():
    records = [
        _mme("existence", "1.jpg", "Yes", "Yes"),            # correct
        _mme("existence", "1.jpg", "No", "No"),              # correct -> image 1 both right
        _mme("existence", "2.jpg", "yes, there is", "Yes"),  # "yes," starts with yes: correct
        _mme("existence", "2.jpg", "Yes", "No"),             # wrong
        _mme("existence", "3.jpg", "Nope", "Yes"),           # "nope" -> no: wrong
        _mme("existence", "3.jpg", "I think not", "No"),     # "i th" -> other: wrong
        _mme("code_reasoning", "a.png", "No", "No"),         # correct
        _mme("code_reasoning", "a.png", "no", "Yes"),        # wrong
    ]
    scores = mme_scores(records)
    existence = scores["subtasks"]["existence"]
    assert existence["acc"] == pytest.approx(0.5)             # 3 of 6 questions
    assert existence["acc_plus"] == pytest.approx(1 / 3)      # 1 of 3 images
    assert existence["score"] == pytest.approx(250 / 3)       # (1/2 + 1/3) * 100
    assert scores["subtasks"]["code_reasoning"]["score"] == pytest.approx(50.0)  # (1/2 + 0)*100
    assert scores["perception"] == pytest.approx(250 / 3)
    assert scores["cognition"] == pytest.approx(50.0)
    assert len(scores["missing_subtasks"]) == 12 and "OCR" in scores["missing_subtasks"]


def test_mme_scores_rejects_bad_records():
    with pytest.raises(ValueError, match="expected 2 questions"):
        mme_scores([_mme("OCR", "1.jpg", "Yes", "Yes")])
    with pytest.raises(ValueError, match="unknown MME subtask"):
        mme_scores([_mme("ocr", "1.jpg", "Yes", "Yes")])


# ----------------------------------------------------------------------------- EntityGrid-QA


def _eg(task, edge, prediction, answer, synonyms=None):
    record = {"task": task, "edge": edge, "prediction": prediction, "answer": answer}
    if synonyms is not None:
        record["synonyms"] = synonyms
    return record


def test_entitygrid_scores_hand_counted():
    records = [
        _eg("recognition", True, "Cat.", "cat"),                # correct (punctuation)
        _eg("recognition", True, "kitty", "cat", ["kitty"]),    # correct (synonym)
        _eg("recognition", True, "dog", "cat"),                 # wrong
        _eg("recognition", False, "The cat", "cat"),            # wrong: no article removal
        _eg("recognition", False, "CAT", "cat"),                # correct
        _eg("position", True, "top left", "top-left"),          # correct: '-' -> space
        _eg("position", True, "bottom", "top"),                 # wrong
        _eg("position", False, "Top-Left!", "top-left"),        # correct
        _eg("counting", True, "two", "2"),                      # correct (number word)
        _eg("counting", False, "2", "two"),                     # correct
        _eg("counting", False, "3", "2"),                       # wrong
        _eg("counting", False, "none", "0"),                    # correct
    ]
    scores = entitygrid_scores(records)
    recognition, position, counting = (scores[t] for t in ("recognition", "position", "counting"))
    assert recognition["edge"] == pytest.approx(2 / 3)
    assert recognition["non_edge"] == pytest.approx(1 / 2)
    assert recognition["discrepancy"] == pytest.approx(1 / 2 - 2 / 3)   # -1/6
    assert recognition["all"] == pytest.approx(3 / 5)
    assert (recognition["n_edge"], recognition["n_non_edge"]) == (3, 2)
    assert position["edge"] == pytest.approx(1 / 2) and position["non_edge"] == 1.0
    assert position["discrepancy"] == pytest.approx(0.5)                # 1 - 1/2
    assert counting["edge"] == 1.0 and counting["non_edge"] == pytest.approx(2 / 3)
    assert counting["discrepancy"] == pytest.approx(-1 / 3)             # 2/3 - 1
    assert scores["overall"] == pytest.approx(8 / 12)                   # 3 + 2 + 3 correct of 12


def test_entitygrid_scores_empty_cells_and_errors():
    scores = entitygrid_scores([_eg("position", False, "top", "top")])
    assert scores["position"]["non_edge"] == 1.0
    assert math.isnan(scores["position"]["edge"]) and math.isnan(scores["position"]["discrepancy"])
    assert math.isnan(scores["counting"]["all"]) and scores["counting"]["n_edge"] == 0
    with pytest.raises(ValueError, match="task must be one of"):
        entitygrid_scores([_eg("ocr", True, "a", "a")])
    with pytest.raises(ValueError, match="edge must be a bool"):
        entitygrid_scores([_eg("position", 1, "a", "a")])
