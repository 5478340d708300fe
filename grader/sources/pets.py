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

**For grading** (`DATA_KIND = "image_folder"`, `for_grading(data_dir, *, secret)`; the `pets`
exercise, lesson 1's "is it a cat?"). Labels are the species, "cat" or "dog". Training images:
a fixed, species-balanced subset of trainval (TRAIN_PER_SPECIES of each); test images: a fixed,
species-balanced subset of the test split (TEST_PER_SPECIES of each); each subset is drawn once
with SUBSET_SEED and is the same for every grade, so scores compare across grades. Where a split
holds fewer images of a species (the fixture), both species get as many as the rarer one has.
Every image is decoded, turned to RGB (some files are CMYK or PNG), shrunk so its longest side
is IMAGE_LONGEST_SIDE and stored as JPEG: about 15 KB each instead of the originals' 100 KB+, so
the reveal stays cheap and the clock measures training, not decoding 500-pixel photos.

**Threat model.** The learner's code sees, in the sandbox, the labelled training folder and the
unlabelled test files under random names in a random order (grader/kinds.py). Pets is public
with every label, so the attack to stop is a lookup: a notebook carrying a table of the public
test images (file hashes, ids, or the bytes we would reveal) mapped to their labels. With a
secret (one per grade, drawn by the grader), every test image is re-made from its original with
a crop keeping TEST_CROP_MIN..1 of each side at a random offset, a horizontal flip with
probability 1/2, a longest side drawn from TEST_SIDE_MIN_FRACTION..1 of IMAGE_LONGEST_SIDE, and
a JPEG quality drawn from TEST_JPEG_QUALITY: no byte of a public copy, or of another grade's,
matches, and neither the name nor the order says anything. All of that is label-preserving (a
cat stays a cat) and mild next to fastai's own augmentation. What remains possible: a
near-duplicate search, a notebook carrying a perceptual hash or thumbnail of each of the 400
public test images with its label and matching the perturbed ones by nearest neighbour. The
sandbox holds no copy of Pets (no network; fastai and torchvision bundle no images), so such a
table must be pasted into the notebook; it would gain a point or two over an honest fine-tune,
and the review flags (grader/review.py: a train() near zero time, a score above the
reference's at a fraction of its time) put such a result in front of an organizer. The training
subset is public and unperturbed: it is what the learner trains on anyway.
"""

import dataclasses
import io
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

# ---- for_grading: the pets exercise (see "For grading" above) ----------------------------------
DATA_KIND = "image_folder"
TRAIN_PER_SPECIES = 400      # training images per species (cat, dog), from trainval: 800 in all
TEST_PER_SPECIES = 200       # test images per species, from the test split: 400 in all
SUBSET_SEED = 0              # draws both fixed subsets; fixed forever (changing it changes every score)
IMAGE_LONGEST_SIDE = 224     # pixels: every revealed image is shrunk to this longest side
TRAIN_JPEG_QUALITY = 90      # JPEG quality (PIL's 1..95 scale) of the training images and public test images
TEST_CROP_MIN = 0.85         # per-grade test images keep at least this fraction of each side (random offset)
TEST_SIDE_MIN_FRACTION = 0.8  # ... and are shrunk to a longest side in this fraction..1 of IMAGE_LONGEST_SIDE
TEST_JPEG_QUALITY = (70, 95)  # ... and stored with a JPEG quality drawn from this range (inclusive)
TEST_FLIP_PROBABILITY = 0.5  # ... and mirrored left-right with this probability

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


@dataclasses.dataclass(frozen=True)
class GradingImages:
    """The image_folder kind's dataset (grader/kinds.py): (JPEG bytes, label) pairs."""
    train_images: list[tuple[bytes, str]]
    test_images: list[tuple[bytes, str]]


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


# ---- for grading -------------------------------------------------------------------------------

def balanced_subset(items: list[tuple[str, str]], per_species: int) -> list[tuple[str, str]]:
    """A fixed, species-balanced subset of (relative path, species) items: per species, the
    items in file order permuted with SUBSET_SEED, the first n of each, where n is per_species
    or fewer when the rarer species has fewer; cats first, then dogs."""
    import numpy as np

    by_species = {name: [item for item in items if item[1] == name] for name in SPECIES.values()}
    if not all(by_species.values()):
        counts = ", ".join(f"{len(v)} {k}" for k, v in by_species.items())
        raise DatasetMissing(SOURCE_ID, f"a split needs both species, found {counts}")
    count = min(per_species, *(len(v) for v in by_species.values()))
    rng = np.random.default_rng(SUBSET_SEED)
    chosen = []
    for name in SPECIES.values():
        group = by_species[name]
        chosen.extend(group[i] for i in rng.permutation(len(group))[:count])
    return chosen


def open_rgb(path: Path, longest_side: int):
    """The image as RGB, decoded at the smallest JPEG scale still at least longest_side (PIL's
    draft: several times faster on the 500-pixel originals)."""
    from PIL import Image

    image = Image.open(path)
    image.draft("RGB", (longest_side, longest_side))
    return image.convert("RGB")


def shrink(image, longest_side: int):
    """Resized (never enlarged) so that its longest side is longest_side."""
    from PIL import Image

    scale = longest_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def jpeg_bytes(image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def public_image(path: Path) -> bytes:
    """An image as revealed for training (and for the public test set): shrunk, JPEG."""
    return jpeg_bytes(shrink(open_rgb(path, IMAGE_LONGEST_SIDE), IMAGE_LONGEST_SIDE), TRAIN_JPEG_QUALITY)


def perturbed_image(path: Path, rng) -> bytes:
    """An image re-made for one grade from rng (see the threat model): a random crop, maybe a
    mirror, a random longest side and JPEG quality. Label-preserving."""
    from PIL import Image

    image = open_rgb(path, IMAGE_LONGEST_SIDE)
    keep_w, keep_h = rng.uniform(TEST_CROP_MIN, 1.0, size=2)
    width, height = max(1, round(image.width * keep_w)), max(1, round(image.height * keep_h))
    left = int(rng.integers(0, image.width - width + 1))
    top = int(rng.integers(0, image.height - height + 1))
    image = image.crop((left, top, left + width, top + height))
    if rng.random() < TEST_FLIP_PROBABILITY:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = round(IMAGE_LONGEST_SIDE * rng.uniform(TEST_SIDE_MIN_FRACTION, 1.0))
    quality = rng.integers(TEST_JPEG_QUALITY[0], TEST_JPEG_QUALITY[1] + 1)
    return jpeg_bytes(shrink(image, side), quality)


def for_grading(data_dir: Path, *, secret: int | None) -> GradingImages:
    """The pets exercise's images: the fixed training subset, and the fixed test subset as is
    (secret None) or re-made for one grade from `secret` (see "For grading" and the threat
    model above). The same secret gives the same bytes."""
    import numpy as np

    train = load(data_dir, split="trainval", label="species")
    test = load(data_dir, split="test", label="species")
    train_images = [(public_image(train.root / relative), label)
                    for relative, label in balanced_subset(train.items, TRAIN_PER_SPECIES)]
    test_items = balanced_subset(test.items, TEST_PER_SPECIES)
    if secret is None:
        test_images = [(public_image(test.root / relative), label) for relative, label in test_items]
    else:
        rng = np.random.default_rng(secret)
        test_images = [(perturbed_image(test.root / relative, rng), label) for relative, label in test_items]
    return GradingImages(train_images, test_images)
