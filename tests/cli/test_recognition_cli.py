"""visor text / moderate / properties: output forms, bad files, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from visor.cli import recognition


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="visor")
    recognition.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def images(tmp_path: Path) -> tuple[Path, Path]:
    good = tmp_path / "hello.png"
    img = Image.new("RGB", (320, 80), (250, 250, 250))
    font = ImageFont.truetype("DejaVuSans.ttf", 36) if _has_font() else ImageFont.load_default(36)
    ImageDraw.Draw(img).text((10, 18), "hello world", fill=(0, 0, 0), font=font)
    img.save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return good, bad


def _has_font() -> bool:
    try:
        ImageFont.truetype("DejaVuSans.ttf", 10)
    except OSError:
        return False
    return True


def test_properties_text_and_json(images: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good, _ = images
    assert _run(["properties", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{good}  320x80  brightness=") and "#fafafa:" in out
    assert _run(["properties", str(good), "--json", "--colors", "2"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["image"] == str(good) and d["properties"]["type"] == "properties"
    assert len(d["properties"]["dominant_colors"]) <= 2


def test_bad_file_is_one_line_on_stderr_and_exit_1(images: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = images
    assert _run(["properties", str(good), str(bad), "--json"]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [("error" in r) for r in rows] == [False, True]
    assert rows[1]["error"]["code"] == "corrupt_image"
    errors = captured.err.splitlines()
    assert errors[0].startswith(f"visor: error: {bad}: CorruptImage") and errors[1].endswith("1 of 2 images failed")


def test_text_command(images: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = images
    assert _run(["text", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{good}: 1 text boxes", "  hello world"]
    assert captured.err.count("\n") == 2
    assert _run(["text", str(good), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["text"]["full_text"] == "hello world"


def test_text_lang_and_engine(images: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good, _ = images
    assert _run(["text", str(good), "--lang", "en,de"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{good}: 1 text boxes", "  hello world"]
    assert _run(["text", str(good), "--lang", "ru"]) == 0  # Cyrillic only: the Latin line is dropped
    assert capsys.readouterr().out.splitlines() == [f"{good}: 0 text boxes"]
    from visor.cli.main import main

    assert main(["text", str(good), "--lang", "xx"]) == 2  # a usage error, one line
    assert capsys.readouterr().err.startswith("visor: error: ConfigError: unknown language code 'xx' (known: af, ar,")
    with pytest.raises(SystemExit):
        _run(["text", str(good), "--engine", "easyocr"])
    assert "invalid choice: 'easyocr' (choose from 'pp-ocr', 'tesseract')" in capsys.readouterr().err


def test_moderate_command(images: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("nudenet")
    good, _ = images
    assert _run(["moderate", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}  adult=VERY_UNLIKELY  racy=VERY_UNLIKELY"
    assert _run(["moderate", str(good), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["moderation"]["adult"] == "VERY_UNLIKELY"


def test_no_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["properties", str(tmp_path)]) == 1
    assert "no images found" in capsys.readouterr().err
