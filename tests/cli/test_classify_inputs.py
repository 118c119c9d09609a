"""``visor classify`` on untrusted folders and model paths: special files are reported and counted,
link loops end, a typo'd model folder says so and suggests close names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import visor
from visor.cli.main import main
from visor.errors import ModelNotFound

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


def test_classify_reports_special_files_in_a_folder(tmp_path, capsys, classifier):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE, root / "bus.jpg")
    os.mkfifo(root / "sub" / "pipe.jpg")
    os.symlink("gone.png", root / "broken.png")
    os.symlink("..", root / "sub" / "loop")
    code = main(["classify", "--top-k", "1", str(root)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines()[0] == str(root / "bus.jpg")
    assert err.splitlines() == [
        f"visor: error: {root / 'broken.png'}: ImageNotFound: broken symbolic link: {root / 'broken.png'} -> gone.png",
        f"visor: error: {root / 'sub' / 'pipe.jpg'}: ImageNotFound: not a file: {root / 'sub' / 'pipe.jpg'} "
        "is a FIFO (named pipe)",
        "visor: error: 2 of 3 images failed",
    ]


def test_typo_in_a_model_folder_says_it_does_not_exist_and_suggests(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    code = main(["classify", "--model", "runs/mnie", str(SAMPLE)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "visor: error: ModelNotFound: model folder 'runs/mnie' does not exist (nor a model file of that name, "
        "and it is not a registry model). Did you mean 'runs/mine'?")
    with pytest.raises(ModelNotFound, match=r"Did you mean 'efficientnet_lite0'\?$"):
        visor.load("runs/efficientnet_lite")
    with pytest.raises(ModelNotFound, match=r"registry model\)\.$"):
        visor.load(tmp_path / "nowhere" / "model")
    with pytest.raises(ModelNotFound, match="no model card at"):  # the folder exists: the card is missing
        visor.load("runs/mine")
