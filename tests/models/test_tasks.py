"""The task registry: one table from task to predictor, result type, default model, output formats,
options, verb, route, batch task, annotate feature and Cloud Vision types."""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import pytest

from visor.errors import ConfigError
from visor.models import builtin, registry
from visor.models.tasks import TaskRegistry, TaskSpec, builtin_tasks, import_object

SRC = Path(__file__).resolve().parents[2] / "src" / "visor"


def test_the_builtin_table():
    tasks = builtin_tasks()
    assert tasks.names() == ["classification", "detection", "face_detection", "segmentation", "embedding", "text",
                             "moderation", "properties", "crop_hints"]
    assert tasks.verbs() == ["classify", "detect", "faces", "segment", "embed", "read_text", "moderate", "properties"]
    assert tasks.routes() == ["/v1/classify", "/v1/detect", "/v1/faces", "/v1/segment"]
    assert tasks.batch_tasks() == ["classify", "detect", "segment"]
    assert tasks.features() == ["labels", "objects", "faces", "segmentation", "text", "moderation", "properties",
                                "crop_hints"]
    assert tasks.get("detection").options == ("conf", "iou", "max_det", "agnostic")
    assert tasks.get("detection").output_formats == ("yolov5", "yolov8", "yolox")
    assert builtin_tasks() is tasks  # immutable, so one shared table
    assert len(tasks) == 9 and "detection" in tasks and "segmentation" in tasks and "panoptic" not in tasks


def test_lookups_by_each_key():
    tasks = builtin_tasks()
    assert tasks.by_verb("detect").name == "detection"
    assert tasks.by_route("/v1/classify").name == "classification"
    assert tasks.by_batch_task("detect").name == "detection"
    assert tasks.by_feature("objects").name == "detection"
    assert tasks.by_feature("labels").name == "classification"
    assert tasks.by_cloud_vision("OBJECT_LOCALIZATION").name == "detection"
    assert tasks.by_cloud_vision("DOCUMENT_TEXT_DETECTION").name == "text"
    assert tasks.by_cloud_vision("FACE_DETECTION").name == "face_detection"
    assert tasks.by_cloud_vision("SAFE_SEARCH_DETECTION").name == "moderation"


@pytest.mark.parametrize(("lookup", "value", "message"), [
    ("get", "detecton", r"unknown task 'detecton'\. Did you mean 'detection'\? Tasks this visor knows: "
                        r"classification, detection, face_detection, segmentation, embedding, text, moderation, "
                        r"properties, crop_hints"),
    ("by_verb", "clasify", r"no task has the verb 'clasify'\. Did you mean 'classify'\?"),
    ("by_route", "/v1/detct", r"Did you mean '/v1/detect'\?"),
    ("by_feature", "object", r"Did you mean 'objects'\?"),
    ("by_batch_task", "annotate", r"no task has the batch task 'annotate'\. Known: classify, detect, segment"),
    ("by_cloud_vision", "LABEL_DETECTIONS", r"Did you mean 'LABEL_DETECTION'\?"),
])
def test_unknown_keys_are_config_errors_with_suggestions(lookup, value, message):
    with pytest.raises(ConfigError, match=message):
        getattr(builtin_tasks(), lookup)(value)


def test_default_models_are_the_registry_defaults_and_fit_their_task():
    tasks = builtin_tasks()
    assert tasks.get("classification").default_model == registry.DEFAULT_CLASSIFIER
    assert tasks.get("detection").default_model == registry.DEFAULT_DETECTOR
    assert tasks.get("face_detection").default_model == registry.DEFAULT_FACE_DETECTOR
    models = builtin()
    for spec in tasks:
        if spec.default_model is None:
            continue
        card = models.get(spec.default_model)
        assert card.output_format in spec.output_formats, spec.name
        assert card.task == spec.name or spec.name == "embedding", spec.name


def test_every_registry_card_of_a_known_task_has_a_format_its_task_reads():
    tasks = builtin_tasks()
    checked = []
    for card in builtin():
        if card.task in tasks:
            tasks.get(card.task).check_output_format(card.name, card.output_format)
            checked.append(card.name)
    assert checked == ["deeplabv3_voc", "efficientnet_lite0", "yolox_nano", "yunet"]


def _module_exists(reference: str) -> bool:
    module = reference.partition(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def test_every_predictor_result_and_function_reference_imports():
    """Each "module:attr" whose module exists names something there (modules other work adds are skipped)."""
    imported = []
    for spec in builtin_tasks():
        for field in ("predictor", "result", "function"):
            reference = getattr(spec, field)
            if reference is None or not _module_exists(reference):
                continue
            obj = import_object(reference)
            assert inspect.isclass(obj) or callable(obj), reference
            imported.append(reference)
    for always in ("visor.models.classifier:Classifier", "visor.models.detector:Detector",
                   "visor.types.classifications:Classifications", "visor.types.detections:Detections",
                   "visor.retrieval.embed:Embedder", "visor.features.text:TextReader", "visor.types.text:TextLines",
                   "visor.features.moderation:Moderator", "visor.features.properties:image_properties",
                   "visor.types.faces:Faces"):
        assert always in imported
    assert builtin_tasks().get("classification").predictor_class().__name__ == "Classifier"
    assert builtin_tasks().get("detection").result_type().__name__ == "Detections"


def test_a_reference_that_does_not_resolve_is_a_config_error():
    spec = TaskSpec(name="ghost", verb=None, predictor="visor.no_such_module:Ghost", result="visor.types:Nothing")
    with pytest.raises(ConfigError, match=r"'visor\.no_such_module:Ghost' cannot be imported"):
        spec.predictor_class()
    with pytest.raises(ConfigError, match=r"'visor.types:Nothing' does not exist"):
        spec.result_type()
    with pytest.raises(ConfigError, match=r"must be 'package\.module:attribute'"):
        TaskSpec(name="bad", verb=None, predictor="visor.models.Classifier", result="builtins:dict")
    with pytest.raises(ConfigError, match="needs a predictor or a function"):
        TaskSpec(name="bad", verb=None, predictor=None, result="builtins:dict")


def test_duplicates_are_refused_and_extending_makes_a_new_table():
    tasks = builtin_tasks()
    extra = TaskSpec(name="mean_color", verb="mean_color", predictor="builtins:object", result="builtins:tuple",
                     route="/v1/mean_color")
    bigger = tasks.with_tasks(extra)
    assert "mean_color" in bigger and "mean_color" not in tasks and bigger.by_route("/v1/mean_color") is extra
    with pytest.raises(ConfigError, match="a task named 'detection' is already registered"):
        tasks.with_tasks(TaskSpec(name="detection", verb=None, predictor="builtins:object", result="builtins:dict"))
    with pytest.raises(ConfigError, match="tasks 'detection' and 'boxes' both claim the route '/v1/detect'"):
        tasks.with_tasks(TaskSpec(name="boxes", verb=None, predictor="builtins:object", result="builtins:dict",
                                  route="/v1/detect"))
    with pytest.raises(ConfigError, match="both claim the Cloud Vision type 'LABEL_DETECTION'"):
        TaskRegistry([*tasks, TaskSpec(name="labels2", verb=None, predictor="builtins:object",
                                       result="builtins:dict", cloud_vision=("LABEL_DETECTION",))])


def test_the_table_imports_nothing_above_the_models_layer():
    """Predictors live in higher layers (faces, retrieval, features): they are named, never imported."""
    tree = ast.parse((SRC / "models" / "tasks.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    visor_modules = sorted(m for m in imported if m.startswith("visor"))
    assert visor_modules == ["visor.config", "visor.errors", "visor.models.onnx_import", "visor.models.registry"]
