"""The CLI option kit (visor.cli.common): every command's help works, the shared options read alike
everywhere, one exit-code enum, one way to name a model, and defaults from the registry."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from visor.cli import common
from visor.cli.common import ExitCode
from visor.cli.main import COMMAND_MODULES, build_parser, main
from visor.models.registry import (
    DEFAULT_CLASSIFIER,
    DEFAULT_DETECTOR,
    DEFAULT_FACE_DETECTOR,
    DEFAULT_SEGMENTER,
    builtin,
)
from visor.models.tasks import builtin_tasks

SRC = Path(__file__).resolve().parents[2] / "src" / "visor"


def _commands(parser: argparse.ArgumentParser,
              path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every parser of the command tree by its words (``("faces", "detect")``), aliases left out."""
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    found.update(_commands(sub, (*path, name)))
    return found


COMMANDS = _commands(build_parser())
#: The parsers that run something (``visor models`` runs its list and has verbs below it).
LEAVES = {words: p for words, p in COMMANDS.items() if p._defaults.get("func") is not None}


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return parser._option_string_actions.get(flag)


def test_the_command_tree_is_what_this_test_expects():
    """A new command joins the lists below (and so the checks) on purpose."""
    assert sorted(" ".join(w) for w in LEAVES) == sorted([
        "classify", "models", "models list", "models pull", "models import", "data split", "data stats",
        "data convert", "train classify", "train detect", "train segment", "evaluate", "monitor", "detect",
        "faces detect",
        "faces enroll", "faces identify", "faces collections", "anonymize", "text", "moderate", "properties",
        "annotate", "serve", "keys create", "keys list", "keys revoke", "review list", "review export",
        "review stats", "batch", "benchmark", "export", "index build", "index add", "index remove", "index info",
        "search", "curate", "segment", "track", "watch", "receipt"])


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=lambda w: " ".join(w) or "visor")
def test_help_in_a_fresh_process(words):
    """``visor [COMMAND...] --help`` exits 0 in a new interpreter (nothing imported beforehand by the tests)."""
    proc = subprocess.run([sys.executable, "-m", "visor", *words, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith(f"usage: visor {' '.join(words)}".rstrip())


def test_each_command_module_registers_what_main_expects():
    """``visor COMMAND`` builds only COMMAND's module's parsers (visor.cli.main.COMMAND_MODULES): that table is
    what each module registers, and the parsers of one command alone are those of the whole tree."""
    import importlib

    for module, names in COMMAND_MODULES.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"visor.cli.{module}").register(sub)
        assert tuple(sub.choices) == names, module
    every = [*COMMAND_MODULES, "main"]
    assert sorted(p.stem for p in (SRC / "cli").glob("*.py")) == sorted(
        [*every, "__init__", "common", "detection_data", "segmentation_data"])  # a new command module joins the table
    for words, parser in COMMANDS.items():
        if words:
            alone = _commands(build_parser(words[0]))
            assert alone[words].format_help() == parser.format_help(), words


def test_exit_codes_are_one_enum_with_the_documented_values():
    assert {c.name: int(c) for c in ExitCode} == {"OK": 0, "FAILED": 1, "USAGE": 2, "ALERT": 3, "INTERRUPTED": 130}


# --------------------------------------------------------------------------- the shared options read alike

#: Commands whose --threads means something else than inference threads of one model, with their own help.
OWN_THREADS_HELP = {("batch",), ("benchmark",), ("serve",), ("train", "classify"), ("train", "detect"),
                    ("train", "segment")}
#: Commands whose --json is not a flag: ``visor benchmark --json OUT`` writes the report to OUT ('-': stdout);
#: ``visor review list --json`` prints review items (not images) as JSON Lines.
OWN_JSON = {("benchmark",), ("review", "list")}


@pytest.mark.parametrize("words", sorted(LEAVES), ids=" ".join)
def test_shared_options_use_the_kit(words):
    p = LEAVES[words]
    threads = _option(p, "--threads")
    if threads is not None:
        assert (threads.type, threads.default) == (common.positive_int, None)
        if words not in OWN_THREADS_HELP:
            assert threads.help == common.THREADS_HELP
    json_flag = _option(p, "--json")
    if json_flag is not None and words not in OWN_JSON:
        assert isinstance(json_flag, argparse._StoreTrueAction)
        assert json_flag.help in (common.JSON_LINES_HELP, common.JSON_DOCUMENT_HELP)
    progress, no_progress = _option(p, "--progress"), _option(p, "--no-progress")
    assert (progress is None) == (no_progress is None), "--progress and --no-progress come together"
    if progress is not None:
        assert (progress.dest, progress.default, progress.help) == ("progress", None, common.PROGRESS_HELP)
        assert (no_progress.dest, no_progress.help) == ("progress", common.NO_PROGRESS_HELP)
    for flag, text in (("--max-bytes", common.MAX_BYTES_HELP), ("--max-pixels", common.MAX_PIXELS_HELP)):
        limit = _option(p, flag)
        if limit is not None:
            assert (limit.type, limit.help) == (common.positive_int, text)
    batch = _option(p, "--batch-size")
    if batch is not None and words[0] != "train":  # training's batch size defaults to its config's
        assert batch.type is common.positive_int


#: Every command that runs a model names it with --model, its default from the task registry.
MODEL_DEFAULTS = {
    ("classify",): DEFAULT_CLASSIFIER, ("detect",): DEFAULT_DETECTOR, ("annotate",): DEFAULT_CLASSIFIER,
    ("segment",): DEFAULT_SEGMENTER, ("track",): DEFAULT_DETECTOR, ("watch",): DEFAULT_DETECTOR,
    ("faces", "detect"): DEFAULT_FACE_DETECTOR, ("faces", "enroll"): DEFAULT_FACE_DETECTOR,
    ("faces", "identify"): DEFAULT_FACE_DETECTOR, ("anonymize",): DEFAULT_FACE_DETECTOR,
    ("export",): DEFAULT_CLASSIFIER, ("benchmark",): DEFAULT_CLASSIFIER, ("serve",): DEFAULT_CLASSIFIER,
    ("curate",): DEFAULT_CLASSIFIER, ("index", "build"): DEFAULT_CLASSIFIER,
    ("evaluate",): None, ("monitor",): None, ("batch",): None,  # by the data, the profile, the --task
}


def test_registry_defaults_are_the_task_registry_defaults():
    tasks = builtin_tasks()
    assert tasks.get("classification").default_model == DEFAULT_CLASSIFIER
    assert tasks.get("detection").default_model == DEFAULT_DETECTOR
    assert tasks.get("face_detection").default_model == DEFAULT_FACE_DETECTOR
    assert {DEFAULT_CLASSIFIER, DEFAULT_DETECTOR, DEFAULT_FACE_DETECTOR} <= set(builtin().names())


@pytest.mark.parametrize("words", sorted(LEAVES), ids=" ".join)
def test_model_is_named_one_way(words):
    p = LEAVES[words]
    model = _option(p, "--model")
    if words not in MODEL_DEFAULTS:
        assert model is None, f"visor {' '.join(words)} takes --model: add it to MODEL_DEFAULTS"
        return
    assert model is not None and model.metavar == "MODEL" and model.dest == "model"
    default = MODEL_DEFAULTS[words]
    # commands that still take the old positional MODEL keep the default aside, resolved by model_arg
    assert p._defaults.get("model_default", model.default) == default
    if default is not None:
        assert f"(default {default}" in model.help
    assert not any(a.dest == "model" and not a.option_strings and a.help != argparse.SUPPRESS for a in p._actions), \
        "MODEL is no longer a visible positional"


def test_cli_verbs_for_every_task_verb():
    """Each top-level verb of the task registry has its command (``read_text`` is ``visor read-text``, alias of
    ``visor text``); ``embed`` runs inside ``visor index build`` and ``visor curate``."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for verb in builtin_tasks().verbs():
        if verb == "embed":
            continue
        assert verb.replace("_", "-") in sub.choices, verb
    assert sub.choices["read-text"] is sub.choices["text"]
    for name in ("classify", "detect", "text", "moderate", "properties"):
        p = sub.choices[name]
        assert all(_option(p, f) for f in ("--json", "--max-bytes", "--max-pixels", "--progress")), name
        assert (_option(p, "--threads") is None) == (name == "properties"), name  # properties runs no model
    faces = next(a for a in sub.choices["faces"]._actions if isinstance(a, argparse._SubParsersAction))
    assert all(_option(faces.choices["detect"], f) for f in ("--json", "--threads", "--max-bytes", "--progress"))


def test_faces_detector_choice_and_default():
    p = LEAVES[("faces", "detect")]
    assert _option(p, "--detector") is _option(p, "--model")  # --detector: the same option
    args = build_parser().parse_args(["faces", "detect", "x.jpg"])
    assert args.model == DEFAULT_FACE_DETECTOR == "yunet"
    assert build_parser().parse_args(["faces", "detect", "x.jpg", "--detector", "hog"]).model == "hog"


def test_the_model_positional_still_works_but_not_twice(capsys, tmp_path):
    """``visor evaluate MODEL DATA`` (README until it moves to --model) parses; MODEL and --model together are
    a usage error naming the one form."""
    args = build_parser().parse_args(["evaluate", "runs/mine", "photos.csv", "--split", "test"])
    assert (args.model_positional, args.model, args.data) == ("runs/mine", None, "photos.csv")
    args = build_parser().parse_args(["evaluate", "photos.csv", "--model", "runs/mine"])
    assert (args.model_positional, args.model, args.data) == (None, "runs/mine", "photos.csv")
    assert common.model_arg(build_parser().parse_args(["export"]), "export") == DEFAULT_CLASSIFIER
    assert common.model_arg(build_parser().parse_args(["export", "--model", "m"]), "export") == "m"
    assert capsys.readouterr().err == ""
    assert common.model_arg(build_parser().parse_args(["benchmark", "m"]), "benchmark") == "m"
    assert capsys.readouterr().err == ("visor: warning: 'visor benchmark MODEL ...' is deprecated; name the model "
                                       "with --model: visor benchmark --model m ...\n")
    code = main(["evaluate", "a", str(tmp_path), "--model", "b", "--no-progress"])
    assert code == ExitCode.USAGE
    assert capsys.readouterr().err == ("visor: error: ConfigError: the model is given twice ('a' and --model 'b'); "
                                       "use --model only: visor evaluate --model MODEL ...\n")


# --------------------------------------------------------------------------- source conventions


def _strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are not docstrings."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_exit_codes_are_defined_only_in_cli_common():
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            offenders += [f"{path.relative_to(SRC)}:{node.lineno} {n}" for n in names if n.startswith("EXIT_")]
    assert offenders == []


_MODEL_NAME = re.compile(r"(?<![\w-])efficientnet_lite0(?![\w-])")


def test_no_default_model_literals_in_the_cli():
    offenders = [f"{p.relative_to(SRC)}:{n.lineno}" for p in sorted((SRC / "cli").glob("*.py"))
                 for n in _strings(ast.parse(p.read_text())) if _MODEL_NAME.search(n.value)]
    assert offenders == []


def test_no_default_model_literals_in_the_library():
    """The default classifier is named once, in models/registry.py (DEFAULT_CLASSIFIER); the architectures
    keep their own names. Docstrings may mention it."""
    offenders = []
    for path in _sources():
        rel = path.relative_to(SRC).as_posix()
        if rel == "models/registry.py" or rel.startswith("models/architectures/"):
            continue
        offenders += [f"{rel}:{n.lineno}" for n in _strings(ast.parse(path.read_text())) if _MODEL_NAME.search(n.value)]
    assert offenders == []
