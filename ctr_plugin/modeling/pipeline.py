"""``transformers.pipeline`` for a trained checkpoint: text classification with a task argument.

Registered the documented way (``PIPELINE_REGISTRY.register_pipeline``) as
``"continual-text-classification"`` when this module is imported::

    from transformers import pipeline
    from ctr_plugin.modeling.pipeline import continual_pipeline

    pipe = continual_pipeline("my_ctr")  # or pipeline("continual-text-classification", model=ContinualModel...)
    pipe(["The battery died in a week."], task="laptops")  # [{"label": ..., "score": ..., "task": "laptops"}]
    pipe([{"text": "A moving film.", "task": "sst2"}, {"text": "Great keys.", "task": "laptops"}])

The model is a :class:`ContinualModel`, not a ``PreTrainedModel``: it has no ``config.json`` for
``AutoModel`` and one head per task, so the pipeline's steps delegate to
:meth:`ContinualModel.predict` (the one place that checks texts, tasks and pairs, batches and
classifies), and a pipeline call gives exactly the labels and probabilities ``predict`` gives.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from ctr_plugin.errors import CTRError, TaskError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.modeling.prediction import Prediction

PIPELINE_TASK = "continual-text-classification"
INPUT_KEYS = ("text", "text_pair", "task")


class ContinualTextClassificationPipeline(Pipeline):
    """Classify texts with a :class:`ContinualModel`, each text by the head of its own task.

    Inputs: a text, a dict ``{"text": ..., "task": ..., "text_pair": ...}`` (``task`` and
    ``text_pair`` optional), or a list (or dataset, or generator) of them. ``task`` given to the call
    applies to every text that names none. Call parameters: ``task``; ``top_k`` (1: the predicted
    label; an integer k: the k likeliest labels; None: every label of the text's task, likeliest
    first); ``max_length`` (tokens, as in ``predict``); ``score`` (how ``predict`` infers the task of
    texts given none, where the model can). ``batch_size`` (the pipeline's) sets how many texts go
    to one ``predict`` call, which batches them by length across tasks.

    Output per text: ``{"label", "score", "task"}`` (and ``task_score`` where the task was inferred)
    with ``top_k=1``, else a list of them; a list of inputs gives a list of outputs.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False  # the model carries the tokenizer it was trained with

    def __init__(self, model: ContinualModel, tokenizer=None, **kwargs):
        if not isinstance(model, ContinualModel):
            raise CTRError(
                f"The {PIPELINE_TASK!r} pipeline serves a ctr_plugin ContinualModel, got {type(model).__name__}. "
                "Load one with ContinualModel.from_pretrained(checkpoint), or call continual_pipeline(checkpoint)."
            )
        if tokenizer is not None and tokenizer.get_vocab() != model.tokenizer.get_vocab():
            raise CTRError(
                "The tokenizer given differs from the one the checkpoint was trained with (their vocabularies "
                "differ); the pipeline classifies with the model's own tokenizer. Leave tokenizer out, or pass "
                "AutoTokenizer.from_pretrained(checkpoint)."
            )
        super().__init__(model=model, tokenizer=model.tokenizer, **kwargs)

    def _sanitize_parameters(self, task=None, top_k: int | None | str = "", max_length=None, score=None):
        if not (top_k in ("", None) or (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1)):
            raise CTRError(f"top_k is {top_k!r}: give a whole number >= 1, or None for every label.")
        preprocess = {} if task is None else {"task": task}
        forward = {k: v for k, v in (("max_length", max_length), ("score", score)) if v is not None}
        postprocess = {} if top_k == "" else {"top_k": top_k}  # "": not given (None asks for every label)
        return preprocess, forward, postprocess

    def preprocess(self, inputs, task=None) -> dict[str, Any]:
        """One input as ``{"text", "text_pair", "task"}`` (None where not given); raw strings: the
        tokenizing happens in ``predict``, batched by length."""
        if isinstance(inputs, str):
            return {"text": inputs, "text_pair": None, "task": task}
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - set(INPUT_KEYS))
            if unknown or "text" not in inputs:
                raise CTRError(
                    f"A {PIPELINE_TASK} input dict takes the keys text (required), text_pair and task; got "
                    f"{sorted(inputs)}."
                )
            given = inputs.get("task")
            return {
                "text": inputs["text"],
                "text_pair": inputs.get("text_pair"),
                "task": task if given is None else given,
            }
        raise CTRError(
            f"The {PIPELINE_TASK} pipeline takes a text, a dict {{'text': ..., 'task': ...}} or a list of them; "
            f"got {type(inputs).__name__}."
        )

    def _forward(self, model_inputs: dict[str, Any], **predict_options) -> dict[str, list[Prediction]]:
        """``ContinualModel.predict`` on the batch's texts (``predict_options``: ``max_length``, and
        ``score`` where a text comes without its task)."""
        batched = isinstance(model_inputs["text"], list)  # the pipeline's batch_size > 1 collates into lists
        texts, pairs, tasks = (model_inputs[k] if batched else [model_inputs[k]] for k in INPUT_KEYS)
        pairs = pairs if any(p is not None for p in pairs) else None
        if all(t is None for t in tasks):  # no task named: predict() infers it where the model can (task-free)
            return {
                "predictions": self.model.predict(
                    texts, task=None, pairs=pairs, batch_size=len(texts), **predict_options
                )
            }
        if any(t is None for t in tasks):
            raise TaskError(
                f"Some texts name their task and some do not: give every text its task (task=... for all, or "
                f"{{'text': ..., 'task': ...}} each), or none. This model's tasks: {', '.join(self.model.task_names)}."
            )
        return {
            "predictions": self.model.predict(texts, task=tasks, pairs=pairs, batch_size=len(texts), **predict_options)
        }

    def postprocess(self, model_outputs: dict[str, Any], top_k: int | None = 1):
        prediction = model_outputs["predictions"]
        if isinstance(prediction, list):  # unbatched: the one text's
            (prediction,) = prediction
        task = {"task": prediction.task}
        if getattr(prediction, "task_score", None) is not None:  # the task was inferred: how likely it is
            task["task_score"] = prediction.task_score
        if top_k == 1:
            return {"label": prediction.label, "score": prediction.probability, **task}
        if prediction.task is None:
            raise CTRError(
                "top_k other than 1 needs the text's task, so that its labels are known; this model "
                "predicted without one (a shared head): use top_k=1."
            )
        names = self.model.label_names[self.model.task_id(prediction.task)]
        scores = torch.tensor(prediction.logits, dtype=torch.float32).softmax(-1).tolist()  # as predict's
        ranked = sorted(zip(names, scores), key=lambda pair: -pair[1])[:top_k]
        return [{"label": label, "score": score, **task} for label, score in ranked]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """Write the model's checkpoint (``ContinualModel.save_pretrained``; ``continual_pipeline``
        reads it back). ``kwargs``: ``extra`` fields for its config."""
        self.model.save_pretrained(save_directory, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tasks={self.model.task_names}, device={self.device.type})"


def continual_pipeline(
    checkpoint: str | os.PathLike | ContinualModel,
    encoder=None,
    device: int | str | torch.device | None = None,
    **kwargs,
) -> ContinualTextClassificationPipeline:
    """``transformers.pipeline("continual-text-classification", ...)`` for a checkpoint directory
    or Hub repo id (loaded with ``ContinualModel.from_pretrained(checkpoint, encoder=encoder)``) or
    a loaded model. ``device``: as transformers' (None: the first accelerator, else the CPU);
    ``kwargs``: the pipeline's (``batch_size``, ``top_k``, ``max_length``)."""
    from transformers import pipeline

    model = (
        checkpoint if isinstance(checkpoint, ContinualModel) else ContinualModel.from_pretrained(checkpoint, encoder)
    )
    return pipeline(PIPELINE_TASK, model=model, device=device, **kwargs)


PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK, pipeline_class=ContinualTextClassificationPipeline, pt_model=ContinualModel, type="text"
)
