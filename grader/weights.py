"""The pretrained-weights cache: a host folder under the grader's data directory, mounted
read-only in every sandbox where torchvision, fastai, timm and huggingface_hub look for weights,
since the sandbox has no network.

    host                                   inside the sandbox                      who reads it
    <data-dir>/weights/torch/hub/checkpoints /sandbox/weights/torch/hub/checkpoints  torchvision, fastai's
                                                                                   vision_learner (TORCH_HOME)
    <data-dir>/weights/huggingface/hub      /sandbox/weights/huggingface/hub        timm, huggingface_hub
                                                                                   (HF_HOME, HUGGINGFACE_HUB_CACHE;
                                                                                   HF_HUB_OFFLINE=1)

`grader weights prepare NAME` fills it through the libraries' own downloaders where there is a
network: a torchvision model name (resnet18, resnet34, ...) goes through torchvision's weights
API (`get_model_weights(NAME).DEFAULT.get_state_dict(...)` with TORCH_HOME at the cache), which
checks the file's hash prefix; any other name is tried as a timm model (`timm.create_model(NAME,
pretrained=True)` with HF_HOME at the cache). A spec lists what its notebooks load (`weights =
["resnet18"]`); a listed name missing here makes the grade an infra_error before any run, and a
notebook that loads an unlisted, missing file gets the prepare command in its error (the runner
replaces torch.hub's download with that message).
"""

import contextlib
import os
import pathlib

WEIGHTS_SUBDIR = "weights"
TORCH_SUBDIR = "torch"              # TORCH_HOME; torchvision adds hub/checkpoints
HF_SUBDIR = "huggingface"           # HF_HOME; the hub cache is its hub/
TORCH_CHECKPOINTS = ("hub", "checkpoints")
# Folders the libraries expect to exist (torch.hub creates its checkpoints folder otherwise,
# which fails on the read-only mount): made on the host by ensure_cache().
CACHE_FOLDERS = (f"{TORCH_SUBDIR}/hub/checkpoints", f"{HF_SUBDIR}/hub")


def cache_dir(data_dir) -> pathlib.Path:
    return pathlib.Path(data_dir) / WEIGHTS_SUBDIR


def checkpoints_dir(root) -> pathlib.Path:
    return pathlib.Path(root, TORCH_SUBDIR, *TORCH_CHECKPOINTS)


def ensure_cache(data_dir) -> pathlib.Path:
    """Create the cache's folders (readable by every sandbox uid); returns the cache root."""
    root = cache_dir(data_dir)
    for folder in CACHE_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for directory, _, _ in os.walk(root):
        os.chmod(directory, 0o755)
    return root


def environment(root: str) -> dict:
    """The variables that point the libraries at a cache rooted at `root`, offline."""
    return {
        "TORCH_HOME": f"{root}/{TORCH_SUBDIR}",
        "HF_HOME": f"{root}/{HF_SUBDIR}",
        "HUGGINGFACE_HUB_CACHE": f"{root}/{HF_SUBDIR}/hub",
        "HF_HUB_OFFLINE": "1",
    }


def torchvision_file_name(name: str) -> str | None:
    """The file torchvision stores NAME's default weights as (e.g. resnet18-f37072fd.pth), or
    None when torchvision has no model of that name."""
    try:
        from torchvision.models import get_model_weights
        weights_enum = get_model_weights(name)
    except (ImportError, ValueError, KeyError):
        return None
    return weights_enum.DEFAULT.url.rsplit("/", 1)[-1]


def _timm_present(root: pathlib.Path, name: str) -> bool:
    hub = root / HF_SUBDIR / "hub"
    return hub.is_dir() and any(name in entry.name for entry in hub.iterdir())


def missing(names, data_dir) -> list[str]:
    """Which of `names` have no weights file in the cache."""
    root = cache_dir(data_dir)
    absent = []
    for name in names:
        file_name = torchvision_file_name(name)
        present = (checkpoints_dir(root) / file_name).is_file() if file_name else _timm_present(root, name)
        if not present:
            absent.append(name)
    return absent


def missing_message(names) -> str:
    commands = "; ".join(f"`grader weights prepare {name}`" for name in names)
    return (f"pretrained weights {', '.join(names)} are not in the grader's model cache (the sandbox has no "
            f"network); run {commands}")


@contextlib.contextmanager
def _environment_set(values: dict):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def prepare(name: str, data_dir, *, progress: bool = True) -> pathlib.Path:
    """Download NAME's default weights into the cache through the library's own downloader
    (needs a network). Returns the file (torchvision) or the cache folder (timm). Idempotent."""
    root = ensure_cache(data_dir)
    file_name = torchvision_file_name(name)
    online = {**environment(str(root)), "HF_HUB_OFFLINE": "0"}
    with _environment_set(online):
        if file_name:
            import torch.hub
            from torchvision.models import get_model_weights
            torch.hub.set_dir(str(root / TORCH_SUBDIR / "hub"))
            get_model_weights(name).DEFAULT.get_state_dict(progress=progress, check_hash=True)
            path = checkpoints_dir(root) / file_name
        else:
            import timm
            timm.create_model(name, pretrained=True)
            path = root / HF_SUBDIR
    for directory, _, files in os.walk(root):  # readable by every sandbox uid
        os.chmod(directory, 0o755)
        for file in files:
            os.chmod(os.path.join(directory, file), 0o644)
    return path
