"""grader/sources: each data source's real reading code on a fixture in its real on-disk format,
the real downloaders (torchvision's, fastdownload) fed from a server on 127.0.0.1, and the
bundled sources (titanic, movielens_small) on their real data. Nothing here touches the internet.
"""

import functools
import http.server
import tarfile
import threading

import numpy as np
import pytest

from grader import sources
from grader.errors import DatasetMissing, SpecError
from grader.sources import _files, fashion_mnist, imdb_sample, movielens, movielens_small, pets, titanic

FIXTURE_SEED = 7

# Importing torchvision (and fastai, which imports it) calls torch.jit.script, which warns in
# this torch; pyproject turns warnings into errors. It is their import, not our code.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def bundled_dir(tmp_path_factory):
    """One data_dir where the two package-bundled sources are prepared once for the module."""
    data_dir = tmp_path_factory.mktemp("bundled")
    prepared = sources.prepare_all(data_dir, skip_network=True)
    assert prepared == {"pets": None, "imdb_sample": None, "titanic": data_dir / "titanic",
                        "movielens": None, "movielens_small": data_dir / "movielens_small",
                        "fashion_mnist": None}
    return data_dir


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    """(folder, base URL): an HTTP server on 127.0.0.1 serving the files put in folder."""
    folder = tmp_path_factory.mktemp("served")

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tar_gz(archive, folder, arcname):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return archive


# --- the registry --------------------------------------------------------------------------------

def test_registry_names_every_source_and_refuses_unknown_ids():
    assert sources.IDS == ("pets", "imdb_sample", "titanic", "movielens", "movielens_small",
                           "fashion_mnist")
    for source_id, module in sources.SOURCES.items():
        assert module.SOURCE_ID == source_id
        assert callable(module.prepare) and callable(module.load)
        assert module.__doc__ and "Baselines" in module.__doc__ and "On disk" in module.__doc__
        if module.NEEDS_NETWORK:
            assert callable(module.write_fixture)
    assert [i for i in sources.IDS if not sources.needs_network(i)] == ["titanic", "movielens_small"]
    with pytest.raises(SpecError, match="known: pets"):
        sources.load("cifar100", "/nonexistent")


@pytest.mark.parametrize("source_id", sources.IDS)
def test_missing_files_name_the_prepare_command(tmp_path, source_id):
    with pytest.raises(DatasetMissing) as caught:
        sources.load(source_id, tmp_path)
    assert f"grader datasets prepare {source_id}" in str(caught.value)
    assert not (tmp_path / source_id).exists()  # load never prepares


def test_urls_are_fastais_own():
    # Without importing fastai.data.external (it pulls in torch: seconds): fastai's own record
    # of the IMDB_SAMPLE archive, and the literal ML_100k line of its URLs class.
    import importlib.util

    import fastai.data
    from fastdownload import checks_module, read_checks

    size, _first_megabyte_md5 = read_checks(checks_module(fastai.data))[imdb_sample.IMDB_SAMPLE_URL]
    assert size == imdb_sample.DOWNLOAD_BYTES
    external = importlib.util.find_spec("fastai.data.external").origin
    with open(external) as f:
        assert f"ML_100k             = '{movielens.ML_100K_URL}'" in f.read()


def test_a_failed_prepare_leaves_no_half_source_and_a_rerun_finishes(tmp_path, monkeypatch):
    real = titanic.from_package

    def broken():
        raise OSError("disk full")
    monkeypatch.setattr(titanic, "from_package", broken)
    with pytest.raises(OSError):
        titanic.prepare(tmp_path)
    assert not (tmp_path / "titanic").exists()
    monkeypatch.setattr(titanic, "from_package", real)
    assert titanic.prepare(tmp_path) == tmp_path / "titanic"
    assert len(titanic.load(tmp_path)) == titanic.ROWS


# --- titanic (real data, bundled) ---------------------------------------------------------------

def test_titanic_is_the_1309_passengers_with_kaggles_columns(bundled_dir):
    frame = titanic.load(bundled_dir)
    assert tuple(frame.columns) == titanic.COLUMNS and len(frame) == 1309
    assert frame["Survived"].value_counts().to_dict() == {0: 809, 1: 500}
    assert frame["Pclass"].value_counts().to_dict() == {3: 709, 1: 323, 2: 277}
    assert set(frame["Sex"]) == {"female", "male"}
    assert frame["Age"].dtype == np.float64 and frame["Age"].isna().sum() == 263
    assert frame.drop(columns="Age").notna().all().all()
    assert frame["PassengerId"].tolist() == list(range(1, 1310)) and frame["Name"].is_unique
    assert frame.loc[0, "Name"] == "Allen, Miss. Elisabeth Walton"  # names joined in row order
    for column in ("PassengerId", "Survived", "Pclass", "SibSp", "Parch"):
        assert frame[column].dtype == np.int64


def test_titanic_prepare_is_idempotent(bundled_dir, monkeypatch):
    before = (bundled_dir / "titanic" / titanic.CSV_FILE).stat().st_mtime_ns
    monkeypatch.setattr(titanic, "from_package", lambda: pytest.fail("rebuilt a prepared source"))
    assert titanic.prepare(bundled_dir) == bundled_dir / "titanic"
    assert (bundled_dir / "titanic" / titanic.CSV_FILE).stat().st_mtime_ns == before


def test_titanic_split_is_fixed_stratified_and_disjoint(bundled_dir):
    frame = titanic.load(bundled_dir)
    train, test = titanic.split(frame)
    again_train, again_test = titanic.split(frame)
    assert len(train) == 891 and len(test) == 418  # Kaggle's sizes
    assert test["PassengerId"].tolist() == again_test["PassengerId"].tolist()
    assert not set(train["PassengerId"]) & set(test["PassengerId"])
    assert abs(test["Survived"].mean() - frame["Survived"].mean()) < 0.005
    other_train, other_test = titanic.split(frame, seed=1)
    assert set(other_test["PassengerId"]) != set(test["PassengerId"])


# --- movielens_small (real data, bundled) -------------------------------------------------------

def test_movielens_small_is_latest_small(bundled_dir):
    ratings = movielens_small.load(bundled_dir)
    assert tuple(ratings.columns) == movielens_small.RATING_COLUMNS and len(ratings) == 100_004
    assert [str(t) for t in ratings.dtypes] == ["int64", "int64", "float64", "int64"]
    assert ratings["user"].nunique() == 671
    assert set(np.unique(ratings["rating"])) <= set(np.arange(1, 11) / 2)  # half stars 0.5..5
    items = movielens_small.load_items(bundled_dir)
    assert tuple(items.columns) == movielens_small.ITEM_COLUMNS
    assert items["item"].is_unique and set(ratings["item"]) == set(items["item"])


def test_movielens_small_prepare_is_idempotent(bundled_dir, monkeypatch):
    monkeypatch.setattr(movielens_small, "from_package", lambda: pytest.fail("rebuilt"))
    assert sources.prepare("movielens_small", bundled_dir) == bundled_dir / "movielens_small"


def test_rating_split_is_fixed_and_disjoint(bundled_dir):
    ratings = movielens_small.load(bundled_dir)
    train, test = movielens.split_ratings(ratings)
    assert len(test) == round(0.2 * len(ratings)) and len(train) + len(test) == len(ratings)
    assert not set(train.index) & set(test.index)
    assert test.index.tolist() == movielens.split_ratings(ratings)[1].index.tolist()


# --- movielens (ML-100k format) -----------------------------------------------------------------

def test_movielens_fixture_reads_through_the_real_format(tmp_path):
    folder = movielens.write_fixture(tmp_path, seed=FIXTURE_SEED, n_users=10, n_items=12,
                                     n_ratings=50)
    assert folder == tmp_path / "movielens" / "ml-100k"
    first = (folder / "u.data").read_text().splitlines()[0].split("\t")
    assert len(first) == 4 and all(field.isdigit() for field in first)
    ratings = movielens.load(tmp_path)
    assert tuple(ratings.columns) == movielens.RATING_COLUMNS and len(ratings) == 50
    assert [str(t) for t in ratings.dtypes] == ["int64", "int64", "float64", "int64"]
    assert ratings["user"].between(1, 10).all() and ratings["item"].between(1, 12).all()
    assert set(ratings["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert not ratings.duplicated(["user", "item"]).any()
    raw = (folder / "u.item").read_bytes()
    assert "Café".encode("latin-1") in raw and len(raw.splitlines()[0].split(b"|")) == 24
    items = movielens.load_items(tmp_path)
    assert items["item"].tolist() == list(range(1, 13))
    assert items.loc[0, "title"] == "Café Society 1 (1990)"
    assert items.loc[4, "title"] == '"Quoted" Title 5 (1994)'


def test_movielens_prepare_runs_fastdownload_and_checks_the_md5(tmp_path, local_server):
    served, base_url = local_server
    movielens.write_fixture(tmp_path / "fixture", seed=FIXTURE_SEED)
    archive = movielens.write_fixture_archive(tmp_path / "fixture", served / "ml" / "ml-100k.zip")
    url = f"{base_url}/ml/ml-100k.zip"

    with pytest.raises(ValueError, match="not the published"):
        movielens.prepare(tmp_path / "bad", url=url, md5="0" * 32)
    assert not (tmp_path / "bad" / "movielens").exists()
    assert not (tmp_path / "bad" / ".movielens.staging").exists()  # a bad archive is not kept

    data_dir = tmp_path / "data"
    assert movielens.prepare(data_dir, url=url, md5=_files.md5_of(archive)) == data_dir / "movielens"
    assert (data_dir / "movielens" / "archive" / "ml-100k.zip").is_file()
    loaded = movielens.load(data_dir)
    assert loaded.equals(movielens.load(tmp_path / "fixture"))
    archive.unlink()  # a second prepare must not fetch again
    movielens.prepare(data_dir, url=url, md5=_files.md5_of(data_dir / "movielens/archive/ml-100k.zip"))


# --- imdb_sample --------------------------------------------------------------------------------

def test_imdb_sample_fixture_reads_through_the_real_format(tmp_path):
    path = imdb_sample.write_fixture(tmp_path, seed=FIXTURE_SEED, n_train=16, n_valid=4)
    assert path == tmp_path / "imdb_sample" / "imdb_sample" / "texts.csv"
    assert path.read_text().splitlines()[0] == "label,text,is_valid"
    texts = imdb_sample.load(tmp_path)
    assert len(texts.texts) == len(texts.labels) == len(texts.is_valid) == 20
    assert all(isinstance(t, str) for t in texts.texts)
    assert all(type(v) is bool for v in texts.is_valid) and sum(texts.is_valid) == 4
    assert set(texts.labels) == {"negative", "positive"}
    assert any('"honestly".\nSecond paragraph,' in t for t in texts.texts)  # quoting survives


def test_imdb_sample_rejects_unknown_labels(tmp_path):
    path = imdb_sample.write_fixture(tmp_path, seed=FIXTURE_SEED, n_train=4, n_valid=2)
    path.write_text(path.read_text().replace("positive", "pos", 1))
    with pytest.raises(ValueError, match="pos"):
        imdb_sample.load(tmp_path)


def test_imdb_sample_prepare_runs_fastdownload(tmp_path, local_server):
    served, base_url = local_server
    imdb_sample.write_fixture(tmp_path / "fixture", seed=FIXTURE_SEED)
    imdb_sample.write_fixture_archive(tmp_path / "fixture", served / "imdb" / "imdb_sample.tgz")
    data_dir = tmp_path / "data"
    url = f"{base_url}/imdb/imdb_sample.tgz"
    assert imdb_sample.prepare(data_dir, url=url) == data_dir / "imdb_sample"
    assert imdb_sample.load(data_dir) == imdb_sample.load(tmp_path / "fixture")
    imdb_sample.prepare(data_dir, url=f"{base_url}/gone.tgz")  # prepared: nothing fetched


# --- fashion_mnist ------------------------------------------------------------------------------

def test_fashion_mnist_fixture_reads_through_our_idx_reader(tmp_path):
    folder = fashion_mnist.write_fixture(tmp_path, seed=FIXTURE_SEED, n_train=30, n_test=10)
    assert folder == tmp_path / "fashion_mnist" / "FashionMNIST" / "raw"
    data = fashion_mnist.load(tmp_path)
    assert data.x_train.shape == (30, 28, 28) and data.x_test.shape == (10, 28, 28)
    assert data.x_train.dtype == data.x_test.dtype == np.uint8
    assert data.y_train.dtype == data.y_test.dtype == np.int64
    assert set(data.y_train) == set(data.y_test) == set(range(10))


def test_idx_reader_checks_magic_and_length(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = fashion_mnist.idx_bytes(images)
    assert raw[:4] == (2051).to_bytes(4, "big") and raw[4:8] == (2).to_bytes(4, "big")
    (tmp_path / "ok").write_bytes(raw)
    np.testing.assert_array_equal(fashion_mnist.read_idx(tmp_path / "ok"), images)
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="header says"):
        fashion_mnist.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes((2052).to_bytes(4, "big") + raw[4:])
    with pytest.raises(ValueError, match="magic 2052"):
        fashion_mnist.read_idx(tmp_path / "magic")


def test_fashion_mnist_prepare_runs_torchvisions_downloader(tmp_path, local_server, monkeypatch):
    from torchvision.datasets import FashionMNIST

    served, base_url = local_server
    fixture = fashion_mnist.write_fixture(tmp_path / "fixture", seed=FIXTURE_SEED)
    (served / "fmnist").mkdir()
    resources = []
    for name, _real_md5 in FashionMNIST.resources:
        (served / "fmnist" / name).write_bytes((fixture / name).read_bytes())
        resources.append((name, _files.md5_of(fixture / name)))
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"{base_url}/fmnist/"])
    monkeypatch.setattr(FashionMNIST, "resources", resources)

    data_dir = tmp_path / "data"
    assert fashion_mnist.prepare(data_dir) == data_dir / "fashion_mnist"
    ours, expected = fashion_mnist.load(data_dir), fashion_mnist.load(tmp_path / "fixture")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(expected, name))
    # torchvision reads the same files to the same arrays
    theirs = FashionMNIST(data_dir / "fashion_mnist", train=False)
    np.testing.assert_array_equal(theirs.data.numpy(), ours.x_test)
    np.testing.assert_array_equal(theirs.targets.numpy(), ours.y_test)


# --- pets ---------------------------------------------------------------------------------------

def test_pets_fixture_uses_the_real_naming_and_annotations(tmp_path):
    base = pets.write_fixture(tmp_path, seed=FIXTURE_SEED, per_breed=3)
    assert base == tmp_path / "pets" / "oxford-iiit-pet"
    listed = pets.read_annotations(base / "annotations" / "list.txt")
    assert len(listed) == 6 * 3
    for image_id, class_id, species, breed_id in listed:
        breed = pets.breed_from_image_id(image_id)
        assert pets.SPECIES[species] == pets.species_from_file_name(image_id)  # the naming rule
        assert class_id == sorted(pets.CAT_BREEDS + pets.DOG_BREEDS, key=str.lower).index(breed) + 1
    everything = pets.load(tmp_path, split="all")
    trainval, test = pets.load(tmp_path), pets.load(tmp_path, split="test")
    assert everything.root == base
    assert len(trainval.items) + len(test.items) == len(everything.items) == 18
    assert not {p for p, _ in trainval.items} & {p for p, _ in test.items}
    assert {label for _, label in everything.items} == {"cat", "dog"}
    for relative, label in everything.items:
        assert relative.startswith("images/") and (base / relative).is_file()
        assert label == pets.species_from_file_name(relative)
    breeds = pets.load(tmp_path, split="all", label="breed")
    assert {b for _, b in breeds.items} == {"Abyssinian", "Bengal", "Birman", "american_bulldog",
                                           "american_pit_bull_terrier", "basset_hound"}
    from PIL import Image
    with Image.open(base / everything.items[0][0]) as image:
        assert image.format == "JPEG" and image.size == (16, 16)


def test_pets_refuses_a_listed_image_that_is_missing(tmp_path):
    base = pets.write_fixture(tmp_path, seed=FIXTURE_SEED)
    relative = pets.load(tmp_path).items[0][0]
    (base / relative).unlink()
    with pytest.raises(DatasetMissing, match="grader datasets prepare pets"):
        pets.load(tmp_path)
    with pytest.raises(ValueError, match="split"):
        pets.load(tmp_path, split="val")


def test_pets_prepare_runs_torchvisions_downloader(tmp_path, local_server, monkeypatch):
    from torchvision.datasets import OxfordIIITPet

    served, base_url = local_server
    base = pets.write_fixture(tmp_path / "fixture", seed=FIXTURE_SEED)
    (served / "pets").mkdir()
    # The real archives each hold one top folder: images/ and annotations/.
    resources = []
    for part in ("images", "annotations"):
        archive = tar_gz(served / "pets" / f"{part}.tar.gz", base / part, part)
        resources.append((f"{base_url}/pets/{archive.name}", _files.md5_of(archive)))
    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", tuple(resources))

    data_dir = tmp_path / "data"
    assert sources.prepare("pets", data_dir) == data_dir / "pets"
    assert not list((data_dir / "pets" / "oxford-iiit-pet").glob("*.tar.gz"))  # spent archives go
    assert pets.load(data_dir) == pets.load(tmp_path / "fixture").__class__(
        data_dir / "pets" / "oxford-iiit-pet", pets.load(tmp_path / "fixture").items)
    theirs = OxfordIIITPet(data_dir / "pets", split="test", target_types="binary-category")
    ours = pets.load(data_dir, split="test")
    assert [pets.SPECIES[t + 1] for _, t in theirs] == [label for _, label in ours.items]
