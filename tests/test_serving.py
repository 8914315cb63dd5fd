"""Serving a trained checkpoint: the transformers pipeline, torch.export and ONNX programs, and
the plugin config read back from a checkpoint."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ctr_plugin.checkpoint.format import CONFIG_FILE
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import CheckpointError, CTRError, TaskError
from ctr_plugin.modeling.export import export_for_tasks, export_onnx
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.modeling.pipeline import PIPELINE_TASK, ContinualTextClassificationPipeline, continual_pipeline
from ctr_plugin.plugins.config import CHECKPOINT_CONFIG, PluginConfig

from conftest import TINY_PLUGIN

TEXTS = ["good red cat", "the dog was very bad", "blue", "a hen is not a cow and the cow is not pink", "sad"]
TASKS = ["sentiment", "colour", "sentiment", "aspect", "colour"]
PAIRS = [None, None, None, "cow", None]  # the aspect task reads (aspect, sentence) pairs


def _model(encoder_dir: str, plugin_type: str) -> ContinualModel:
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(encoder_dir)
    model = ContinualModel(encoder, tokenizer, dataclasses.replace(TINY_PLUGIN, plugin_type=plugin_type), encoder_dir)
    model.add_task("sentiment", ["negative", "positive"])
    model.add_task("colour", ["warm", "cold", "none"])
    model.add_task("aspect", ["negative", "neutral", "positive"], pair=True)
    with torch.no_grad():  # move away from the near-identity start so differences would show
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tiny_bert_dir, tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("serving") / "ctr"
    _model(tiny_bert_dir, "ctr").save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def pipe(checkpoint) -> ContinualTextClassificationPipeline:
    return continual_pipeline(checkpoint, device="cpu")


def _as_dicts(predictions) -> list[dict]:
    """``predict``'s results as the pipeline gives them; scores to float rounding, which differs with
    the padding of the batch a text lands in (a pipeline batch is one ``predict`` call)."""
    return [{"label": p.label, "score": pytest.approx(p.probability, abs=1e-6), "task": p.task} for p in predictions]


# ---- the pipeline ------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_pipeline_call_gives_the_labels_and_scores_predict_gives(pipe, batch_size):
    model = pipe.model
    inputs = [{"text": t, "task": task} | ({"text_pair": p} if p else {}) for t, task, p in zip(TEXTS, TASKS, PAIRS)]
    expected = _as_dicts(model.predict(TEXTS, task=TASKS, pairs=PAIRS))
    assert pipe(inputs, batch_size=batch_size) == expected
    exactly = model.predict(TEXTS[:batch_size], task=TASKS[:batch_size], pairs=PAIRS[:batch_size])  # the same call
    assert pipe(inputs[:batch_size], batch_size=batch_size) == [
        {"label": p.label, "score": p.probability, "task": p.task} for p in exactly
    ]
    single = [t for t, task in zip(TEXTS, TASKS) if task == "colour"]
    assert pipe(single, task="colour", batch_size=batch_size) == _as_dicts(model.predict(single, task="colour"))


def test_a_single_text_gives_one_result_and_a_text_may_override_the_call_task(pipe):
    (expected,) = _as_dicts(pipe.model.predict(["good red cat"], task="sentiment"))
    assert pipe("good red cat", task="sentiment") == expected
    assert pipe({"text": "good red cat", "task": "sentiment"}, task="colour") == expected


def test_top_k_gives_the_task_labels_likeliest_first(pipe):
    (prediction,) = pipe.model.predict(["blue"], task="colour")
    every = pipe("blue", task="colour", top_k=None)
    scores = [d["score"] for d in every]
    assert sorted(d["label"] for d in every) == sorted(pipe.model.label_names[1]) and scores == sorted(scores)[::-1]
    assert every[0] == {"label": prediction.label, "score": pytest.approx(prediction.probability), "task": "colour"}
    assert sum(d["score"] for d in every) == pytest.approx(1.0)
    assert pipe("blue", task="colour", top_k=2) == every[:2]


def test_transformers_pipeline_builds_it_from_a_loaded_checkpoint(checkpoint):
    from transformers import AutoTokenizer, pipeline
    from transformers.pipelines import PIPELINE_REGISTRY

    assert PIPELINE_TASK in PIPELINE_REGISTRY.get_supported_tasks()
    model = ContinualModel.from_pretrained(checkpoint)
    pipe = pipeline(PIPELINE_TASK, model=model, tokenizer=AutoTokenizer.from_pretrained(checkpoint), device="cpu")
    assert isinstance(pipe, ContinualTextClassificationPipeline)
    assert pipe(TEXTS[:3], task="sentiment") == _as_dicts(model.predict(TEXTS[:3], task="sentiment"))


def test_the_pipeline_refuses_what_it_cannot_serve(pipe, tmp_path):
    with pytest.raises(TaskError, match="task"):
        pipe(["good red cat"])  # this model was trained task-incremental: the task must be named
    with pytest.raises(TaskError, match="Some texts name their task"):
        pipe([{"text": "good", "task": "sentiment"}, {"text": "blue"}], batch_size=2)
    with pytest.raises(TaskError, match="Unknown task 'colours'. Did you mean 'colour'"):
        pipe("blue", task="colours")
    with pytest.raises(CTRError, match="keys text"):
        pipe({"txt": "blue", "task": "colour"})
    with pytest.raises(CTRError, match="top_k"):
        pipe("blue", task="colour", top_k=0)
    with pytest.raises(CTRError, match="trained on text pairs"):
        pipe("blue", task="aspect")
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "other"]) + "\n")
    with pytest.raises(CTRError, match="vocabularies differ"):
        ContinualTextClassificationPipeline(
            model=pipe.model, tokenizer=BertTokenizerFast.from_pretrained(str(tmp_path)), device="cpu"
        )
    with pytest.raises(CTRError, match="serves a ctr_plugin ContinualModel"):
        ContinualTextClassificationPipeline(model=torch.nn.Linear(2, 2), device="cpu")


def test_saving_the_pipeline_writes_the_checkpoint(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "again")
    again = continual_pipeline(tmp_path / "again", device="cpu")
    assert again(TEXTS[:2], task="colour") == pipe(TEXTS[:2], task="colour")


# ---- torch.export and ONNX ---------------------------------------------------------------------
def _batches(model: ContinualModel) -> list[dict[str, torch.Tensor]]:
    return [model.tokenize(["blue"]), model.tokenize(TEXTS), model.tokenize(["good cat"], ["cat"])]


def _assert_programs_match_eager(model: ContinualModel, tasks: list[str]) -> None:
    programs = export_for_tasks(model, tasks)
    assert list(programs) == tasks
    for batch in _batches(model):  # dynamic batch size (1 and 5) and length; token types of a pair
        for name, program in programs.items():
            task_ids = torch.full((len(batch["input_ids"]),), model.task_id(name))
            with torch.no_grad():
                eager = model(**batch, task_ids=task_ids).logits
                exported = program.module()(**batch)
            torch.testing.assert_close(exported, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("plugin_type", ["adapter", "lora", "adapter_per_task"])
def test_exported_programs_give_the_eager_logits_for_shared_and_per_task_plugins(tiny_bert_dir, plugin_type):
    _assert_programs_match_eager(_model(tiny_bert_dir, plugin_type), ["sentiment", "colour", "aspect"])


@pytest.mark.parametrize("plugin_type", ["ctr", "hat_adapter"])
def test_exported_programs_give_the_eager_logits_for_hat_masked_plugins(tiny_bert_dir, plugin_type):
    _assert_programs_match_eager(_model(tiny_bert_dir, plugin_type), ["sentiment", "colour", "aspect"])


def test_export_refuses_an_unknown_task_and_names_what_blocks_a_plugin(tiny_bert_dir, monkeypatch):
    model = _model(tiny_bert_dir, "adapter")
    with pytest.raises(TaskError, match="Did you mean 'colour'"):
        export_for_tasks(model, ["colours"])
    # a plugin whose forward branches on a tensor's value: torch.export cannot trace it with dynamic shapes
    monkeypatch.setattr(type(model.plugins[0]), "forward", lambda self, x: x if bool(x.sum() > 0) else -x)
    with pytest.raises(CTRError, match="torch.export could not trace the 'adapter' plugin for task 'colour'"):
        export_for_tasks(model, ["colour"])


@pytest.mark.parametrize("plugin_type", ["adapter", "ctr"])
def test_the_onnx_file_gives_the_eager_logits(tiny_bert_dir, tmp_path, plugin_type):
    for package in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(package, reason=f"ONNX export is optional: {package} is not installed")
    import onnx
    import onnxruntime

    model = _model(tiny_bert_dir, plugin_type)
    path = export_onnx(model, "colour", tmp_path / "colour.onnx")
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert metadata["task"] == "colour" and json.loads(metadata["labels"]) == ["warm", "cold", "none"]
    session = onnxruntime.InferenceSession(str(path))
    for batch in _batches(model):
        (logits,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
        with torch.no_grad():
            eager = model(**batch, task_ids=torch.full((len(batch["input_ids"]),), 1)).logits
        torch.testing.assert_close(torch.from_numpy(logits), eager, atol=1e-5, rtol=1e-5)


# ---- PluginConfig.from_pretrained --------------------------------------------------------------
def test_plugin_config_from_pretrained_reads_the_checkpoints_config(checkpoint):
    assert PluginConfig.from_pretrained(checkpoint) == TINY_PLUGIN
    assert PluginConfig.from_pretrained(checkpoint) == ContinualModel.from_pretrained(checkpoint).plugin_config
    assert CHECKPOINT_CONFIG == CONFIG_FILE  # the name plugins/ reads is the one checkpoint/ writes


def test_plugin_config_from_pretrained_refuses_what_is_not_a_checkpoint(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match="neither a checkpoint directory nor a Hub repo"):
        PluginConfig.from_pretrained(tmp_path / "missing" / "dir")
    with pytest.raises(CheckpointError, match="neither a checkpoint directory nor a Hub repo"):
        PluginConfig.from_pretrained("not-cached-here")  # a repo id: offline and not in the cache
    with pytest.raises(CheckpointError, match="not a ctr_plugin checkpoint config"):
        PluginConfig.from_pretrained(tmp_path)  # a directory without ctr_config.json
    (tmp_path / CHECKPOINT_CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a ctr_plugin checkpoint config"):
        PluginConfig.from_pretrained(tmp_path)
    (tmp_path / CHECKPOINT_CONFIG).write_text(json.dumps({"plugin": ["ctr"]}))
    with pytest.raises(CheckpointError, match="not a JSON object"):
        PluginConfig.from_pretrained(tmp_path)
