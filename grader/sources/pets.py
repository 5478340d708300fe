"""Oxford-IIIT Pets: photos of 37 cat and dog breeds, for lesson 1's fine-tuning ("is it a cat?")
and later the breed classifier.

**What and whose.** Parkhi, Vedaldi, Zisserman and Jawahar, "Cats and Dogs", CVPR 2012.
https://www.robots.ox.ac.uk/~vgg/data/pets/ ; licence CC BY-SA 4.0 (stated on that page), the
images' copyright stays with their owners.

**Where it comes from.** `torchvision.datasets.OxfordIIITPet(root, download=True)`: it fetches
images.tar.gz (about 790 MB) and annotations.tar.gz (about 19 MB) from robots.ox.ac.uk and
checks each against torchvision's md5. prepare() deletes the two archives once they are
extracted.

**On disk** (data_dir/pets is torchvision's `root`):

    pets/oxford-iiit-pet/images/<Breed_name>_<n>.jpg   7,390 photos (a few are PNG or CMYK data
                                                       behind a .jpg name; a handful of .mat
                                                       files sit there too)
    pets/oxford-iiit-pet/annotations/list.txt          header lines starting with '#', then
                                                       "<image id> <class 1..37> <species 1=cat
                                                       2=dog> <breed id within species>"
    pets/oxford-iiit-pet/annotations/trainval.txt      3,680 lines, same four fields, no header
    pets/oxford-iiit-pet/annotations/test.txt          3,669 lines
    pets/oxford-iiit-pet/annotations/trimaps/, xmls/   segmentation and boxes (not used here)

The naming says the species too: a cat breed's file name starts with an uppercase letter
("Bengal_12.jpg"), a dog breed's with a lowercase one ("beagle_7.jpg"). fastai's lesson 1 and
chapter 1 label from that rule; we label from the annotation files, and the tests check that
both agree.

**Raw form.** `load(data_dir, split=, label=)` -> `ImageFolder(root, items)`: root the
oxford-iiit-pet folder, items [(relative path "images/<id>.jpg", label)] in the annotation
file's order; label "cat"/"dog" (label="species") or the breed as written in the file name
(label="breed", e.g. "Bengal", "american_bulldog"). split "trainval", "test" or "all"
(list.txt: the 7,349 annotated images).

**Sizes.** 37 breeds, about 200 photos each: 12 cat breeds (about 2,400 photos), 25 dog breeds
(about 5,000); trainval 3,680, test 3,669.

**Baselines.** No learning: always "dog" is right about 2/3 of the time (25 of 37 breeds at
about 200 photos each); for breeds, a uniform guess is 1/37, about 3%. Published: the dataset
paper reports about 59% breed accuracy from its best hand-engineered model; fastai's chapter 1
(https://github.com/fastai/fastbook/blob/master/01_intro.ipynb) fine-tunes a pretrained ResNet
on cats vs dogs to an error rate under 1% in one epoch, and chapter 5
(https://github.com/fastai/fastbook/blob/master/05_pet_breeds.ipynb) reaches roughly 5-8%
error on the 37 breeds.
"""

import dataclasses
from pathlib import Path

from grader.errors import DatasetMissing
from grader.sources import _files

SOURCE_ID = "pets"
NEEDS_NETWORK = True
DOWNLOAD_BYTES = 811_000_000  # both archives, about 811 MB (and twice that while extracting)
BASE_FOLDER = "oxford-iiit-pet"  # torchvision's folder under its root
SPLIT_FILES = {"trainval": "trainval.txt", "test": "test.txt", "all": "list.txt"}
LABEL_KINDS = ("species", "breed")
SPECIES = {1: "cat", 2: "dog"}  # the annotation files' species codes

# The 37 breeds as their file names spell them (facts about the data set, listed here so that
# the fixture uses the real naming): uppercase first letter for cats, lowercase for dogs.
CAT_BREEDS = ("Abyssinian", "Bengal", "Birman", "Bombay", "British_Shorthair", "Egyptian_Mau",
              "Maine_Coon", "Persian", "Ragdoll", "Russian_Blue", "Siamese", "Sphynx")
DOG_BREEDS = ("american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "boxer",
              "chihuahua", "english_cocker_spaniel", "english_setter", "german_shorthaired",
              "great_pyrenees", "havanese", "japanese_chin", "keeshond", "leonberger",
              "miniature_pinscher", "newfoundland", "pomeranian", "pug", "saint_bernard",
              "samoyed", "scottish_terrier", "shiba_inu", "staffordshire_bull_terrier",
              "wheaten_terrier", "yorkshire_terrier")
LIST_HEADER = (  # our own wording of the header list.txt carries (6 lines starting with '#')
    "#Image CLASS-ID SPECIES BREED-ID",
    "#CLASS-ID: 1..37, breeds in alphabetical order ignoring case",
    "#SPECIES: 1 cat, 2 dog",
    "#BREED-ID: 1..12 among cats, 1..25 among dogs",
    "#cat breeds' image names start with an uppercase letter",
    "#dog breeds' image names start with a lowercase letter",
)


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    root: Path                        # the folder the relative paths start from
    items: list[tuple[str, str]]      # (relative path, label)


def base_dir(data_dir: Path) -> Path:
    return _files.source_dir(data_dir, SOURCE_ID) / BASE_FOLDER


def species_from_file_name(name: str) -> str:
    """The Pets naming rule: cat breeds' files start with an uppercase letter, dogs' lowercase."""
    return "cat" if Path(name).name[0].isupper() else "dog"


def breed_from_image_id(image_id: str) -> str:
    """"Egyptian_Mau_129" -> "Egyptian_Mau": the breed is everything before the last '_'."""
    return image_id.rsplit("_", 1)[0]


def prepare(data_dir: Path) -> Path:
    """Fetch and extract both archives once with torchvision's downloader (md5-checked)."""
    with _files.staged(data_dir, SOURCE_ID) as staging:
        if staging is not None:
            from torchvision.datasets import OxfordIIITPet  # heavy

            OxfordIIITPet(staging, download=True)
            # The archives (about 811 MB) are spent once extracted; torchvision's download=True
            # only looks for the two folders, so it will not fetch them again.
            for archive in (staging / BASE_FOLDER).glob("*.tar.gz"):
                archive.unlink()
    return _files.source_dir(data_dir, SOURCE_ID)


def load(data_dir: Path, *, split: str = "trainval", label: str = "species") -> ImageFolder:
    if split not in SPLIT_FILES:
        raise ValueError(f"split {split!r}; known: {', '.join(SPLIT_FILES)}")
    if label not in LABEL_KINDS:
        raise ValueError(f"label {label!r}; known: {', '.join(LABEL_KINDS)}")
    root = base_dir(data_dir)
    annotations = root / "annotations" / SPLIT_FILES[split]
    _files.require(SOURCE_ID, root / "images", annotations)
    items = []
    for image_id, _class_id, species, _breed_id in read_annotations(annotations):
        relative = f"images/{image_id}.jpg"
        if not (root / relative).is_file():
            raise DatasetMissing(SOURCE_ID, f"{annotations.name} lists {relative}, not on disk")
        name = SPECIES[species] if label == "species" else breed_from_image_id(image_id)
        items.append((relative, name))
    return ImageFolder(root, items)


def read_annotations(path: Path) -> list[tuple[str, int, int, int]]:
    """(image id, class 1..37, species 1..2, breed id) per line; '#' lines are comments."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        image_id, class_id, species, breed_id = line.split()
        rows.append((image_id, int(class_id), int(species), int(breed_id)))
    return rows


def write_fixture(root: Path, *, seed: int, per_breed: int = 2, image_side: int = 16,
                  cat_breeds: int = 3, dog_breeds: int = 3, test_fraction: float = 0.5) -> Path:
    """A small Pets in the real layout under root (playing data_dir): tiny JPEGs named
    <Breed>_<n>.jpg for the first `cat_breeds` cat and `dog_breeds` dog breeds, list.txt,
    trainval.txt and test.txt with the real four fields, and one unannotated image (the real
    images folder has some). Cats are reddish, dogs bluish, so a smoke run can learn the
    species. Returns the oxford-iiit-pet folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = base_dir(root)
    images, annotations = base / "images", base / "annotations"
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    all_breeds = sorted(CAT_BREEDS + DOG_BREEDS, key=str.lower)
    chosen = CAT_BREEDS[:cat_breeds] + DOG_BREEDS[:dog_breeds]
    tint = {"cat": (200, 60, 60), "dog": (60, 60, 200)}  # RGB means per species

    rows = []
    for breed in sorted(chosen, key=str.lower):
        species = species_from_file_name(breed)
        code = 1 if species == "cat" else 2
        within = (CAT_BREEDS if species == "cat" else DOG_BREEDS).index(breed) + 1
        for n in range(1, per_breed + 1):
            image_id = f"{breed}_{n}"
            pixels = rng.normal(tint[species], 25, size=(image_side, image_side, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(images / f"{image_id}.jpg")
            rows.append(f"{image_id} {all_breeds.index(breed) + 1} {code} {within}")
    Image.new("RGB", (image_side, image_side)).save(images / f"{chosen[0]}_{per_breed + 1}.jpg")

    is_test = rng.random(len(rows)) < test_fraction
    (annotations / "list.txt").write_text("\n".join(LIST_HEADER + tuple(rows)) + "\n")
    (annotations / "trainval.txt").write_text(
        "".join(r + "\n" for r, t in zip(rows, is_test) if not t))
    (annotations / "test.txt").write_text("".join(r + "\n" for r, t in zip(rows, is_test) if t))
    return base
