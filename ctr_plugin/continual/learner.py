"""The public Python API: put plugins into your own encoder, learn tasks one after another, save,
share on the Hub. The scripts run through the same entry points (``experiment.run`` uses
:class:`ContinualLearner`), so code written against this module trains exactly as they do.

    from ctr_plugin import ContinualLearner, PluginConfig, get_continual_model

    model = get_continual_model("bert-base-uncased", PluginConfig(adapter_size=2000), method="ctr")
    learner = ContinualLearner(model, epochs=3, lr=1e-3)
    learner.learn_task("laptops", train=[("great screen", "pos"), ...], validation=[...], test=[...])
    learner.learn_task("movies", train=hf_dataset["train"], validation=hf_dataset["validation"])
    model.predict(["the battery died", "a moving film"], task=["laptops", "movies"])
    learner.save_pretrained("my_checkpoint")  # with a model card
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch import nn

from ctr_plugin.continual.evaluation import evaluate
from ctr_plugin.continual.loop import learn_next_task, run_sequence
from ctr_plugin.continual.methods import METHODS, ContinualMethod, get_method
from ctr_plugin.continual.progress import ContinualResults
from ctr_plugin.continual.scenarios import configure_scenario
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.python import as_task_data, check_task_data
from ctr_plugin.data.types import TaskData
from ctr_plugin.encoders.loading import BUNDLED_ENCODER, load_encoder, recorded_encoder_name, resolve_encoder
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.given_encoder import check_encoder, unwrap_encoder
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins.config import PluginConfig
from ctr_plugin.plugins.registry import plugin_kind
from ctr_plugin.reporting.metrics import empty_matrix


def resolve_method(
    method: str | ContinualMethod | None, options: dict | None = None, plugin_type: str = "ctr"
) -> ContinualMethod:
    """A method object from a name (with ``options``), an instance (as it is), or None (the
    method that trains ``plugin_type`` by default: its kind's ``default_method``)."""
    if isinstance(method, ContinualMethod):
        if options:
            raise CTRError(
                "Pass method options with a method name, not with a method object (it has its options already)."
            )
        return method
    if not method:
        method = plugin_kind(plugin_type).default_method
        if method is None:
            raise CTRError(f"Plugin kind {plugin_type!r} names no method that trains it by default: pass method=... .")
    return get_method(method, options)


def get_continual_model(
    encoder_or_name: str | nn.Module | None,
    config: PluginConfig | None = None,
    method: str | ContinualMethod | None = None,
    tokenizer=None,
    method_options: dict | None = None,
) -> ContinualModel:
    """Inject continual-learning plugins into a BERT-like encoder and return the model.

    ``encoder_or_name``: an encoder you loaded (``transformers.AutoModel``; the plugins go into
    it in place, peft-style, and its weights stay frozen), a hub name, a local directory, or
    None for the bundled all-MiniLM-L6-v2. A task model (``AutoModelForSequenceClassification``,
    any ``*For*`` class) gives its base model, and the log names the head dropped; an encoder the
    plugins cannot go into is refused before any work, naming what it lacks. ``tokenizer``
    defaults to the encoder's own.
    ``config`` sizes the plugins (``PluginConfig``; default: the paper's sizes). ``method``
    (a name from ``METHODS`` or a method object) decides the plugin type: by default the method
    that trains ``config.plugin_type`` ("ctr" for the default config); a method whose plugin
    type contradicts the config's is refused. Then add tasks with ``model.add_task(name,
    labels)`` and train with :class:`ContinualLearner` or :class:`~ctr_plugin.ContinualTrainer`.
    """
    base = config or PluginConfig()
    if not isinstance(base, PluginConfig):
        raise CTRError(f"config must be a ctr_plugin.PluginConfig, got {type(base).__name__}.")
    method = resolve_method(method, method_options, base.plugin_type)
    if config is not None and config.plugin_type != type(method).plugin_type:
        fitting = sorted(n for n, m in METHODS.items() if m.plugin_type == config.plugin_type)
        raise CTRError(
            f"Method {method.name!r} trains plugin_type {type(method).plugin_type!r}, but the config says "
            f"{config.plugin_type!r}. Pass PluginConfig(plugin_type={type(method).plugin_type!r}, ...), "
            f"or a method that trains {config.plugin_type!r} ({', '.join(fitting)})."
        )
    if isinstance(encoder_or_name, nn.Module):
        encoder = unwrap_encoder(encoder_or_name)  # a *For* task model gives its base model (logged)
        check_encoder(encoder, method.plugin_config(base))  # before any work: names what it lacks
        name = getattr(encoder, "name_or_path", "") or getattr(getattr(encoder, "config", None), "_name_or_path", "")
        if tokenizer is None:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(name)
            except (OSError, ValueError):
                raise CTRError(
                    f"Could not load the tokenizer of the encoder given (its name_or_path is {name!r}): "
                    "pass tokenizer=..."
                ) from None
        if name and Path(name).is_dir():
            name = str(Path(name).resolve())
            if _bundled_installed() and name == str(Path(resolve_encoder(None)).resolve()):
                name = BUNDLED_ENCODER
        encoder_name = name or "unrecorded (pass encoder= to from_pretrained)"
    else:
        encoder_name = recorded_encoder_name(str(encoder_or_name)) if encoder_or_name is not None else None
        encoder, own_tokenizer = load_encoder(encoder_name)
        tokenizer = tokenizer or own_tokenizer
    model = method.build_model(encoder, tokenizer, base, encoder_name)
    model.method_name = method.name
    return model


def _bundled_installed() -> bool:
    try:
        resolve_encoder(None)
    except CTRError:
        return False
    return True


# ---- training ------------------------------------------------------------------------------------


class ContinualLearner:
    """Trains a :class:`ContinualModel` task after task with a continual-learning method's rules,
    through the one loop every script uses (``ctr_plugin.continual.loop``).

    ``method``: a name, a method object, or None for the one that made the model. Training
    options are a :class:`TrainingConfig` (``training=``) or its fields as keyword arguments
    (``epochs=3, lr=1e-3, batch_size=16, ...``). Per task: a fresh AdamW optimizer with warmup
    and decay, gradient clipping, the method's hooks (HAT's gradient masking and compensation
    before clipping, its temperature schedule and regulariser, mask accumulation after the task),
    the best epoch by validation loss kept, then every task learned here tested (``results``).

    ``scenario``: ``"task"``, ``"domain"`` or ``"class"`` (``docs/methods.md``, "Scenarios"); None
    keeps the model's own (Task-IL for a new model). It gives a model without tasks its heads (one
    shared head, or per-task heads whose task is inferred at test time, as the method declares); a
    model with tasks must be asked for its own.
    """

    def __init__(
        self,
        model: ContinualModel,
        method: str | ContinualMethod | None = None,
        training: TrainingConfig | None = None,
        method_options: dict | None = None,
        accelerator: Accelerator | None = None,
        scenario: str | None = None,
        **training_options,
    ):
        if not isinstance(model, ContinualModel):
            raise CTRError(
                "ContinualLearner trains a ctr_plugin ContinualModel (get_continual_model(...)), "
                f"got {type(model).__name__}."
            )
        self.method = resolve_method(method or model.method_name, method_options, model.plugin_config.plugin_type)
        if type(self.method).plugin_type != model.plugin_config.plugin_type:
            raise CTRError(
                f"Method {self.method.name!r} trains plugin_type {type(self.method).plugin_type!r}, "
                f"but this model carries {model.plugin_config.plugin_type!r} plugins "
                f"(made for method {model.method_name!r}). Use that method, "
                f"or build the model with get_continual_model(..., method={self.method.name!r})."
            )
        if model.method_name not in (None, self.method.name):
            raise CTRError(
                f"This model was trained with method {model.method_name!r}; "
                f"a learner must go on with the same method, not {self.method.name!r}."
            )
        if training is not None and training_options:
            raise CTRError("Pass either training=TrainingConfig(...) or its options as keyword arguments, not both.")
        self.training = training or TrainingConfig(**training_options)
        configure_scenario(model, self.method, scenario)  # continual/scenarios.py: refused with the reason
        self.model = model
        self.model.method_name = self.method.name
        self.accelerator = accelerator
        self.tasks: list[TaskData] = []
        self.results = ContinualResults([], [], [])
        self._started = False

    def _check_can_continue(self) -> None:
        """A model that learned tasks elsewhere (a checkpoint) may go on only with methods whose
        state across tasks the checkpoint holds."""
        method = self.method
        if self.model.num_tasks > len(self.tasks) and not (
            method.resumable if method.continuable is None else method.continuable
        ):
            raise CTRError(
                f"This model already learned {self.model.num_tasks} tasks, and method {method.name!r} "
                "keeps state across tasks that a checkpoint does not hold: "
                "it cannot go on without silently losing it. Learn all tasks with one learner instead."
            )

    def learn_task(
        self,
        name: str,
        train: Any,
        validation: Any = None,
        test: Any = None,
        labels: Sequence[str] | None = None,
        text_column: str = "text",
        label_column: str = "label",
        pair_column: str | None = None,
        source: str | None = None,
    ) -> dict[str, float | None]:
        """Add task ``name`` to the model and train it; return the test accuracy (%) of every task
        learned here so far (None for those without test data): one row of ``results.acc_matrix``.

        The data is as :func:`as_task_data` takes it (``datasets.Dataset`` or lists); it may also
        be a ready :class:`TaskData` as ``train`` (then the other data arguments must be None).
        """
        if self.method.joint_training:
            raise CTRError(
                f"Method {self.method.name!r} learns all tasks at once: call learn_sequence([...]) with every task."
            )
        if len(self.tasks) > self.results.completed_tasks:
            raise CTRError(
                f"Task {self.tasks[-1].name!r} stopped part way, and the model keeps it half-learned: "
                "this learner cannot go on. Load the checkpoint saved before that task (or start again) "
                "and learn it with a new ContinualLearner."
            )
        if isinstance(train, TaskData):
            if any(x is not None for x in (validation, test, labels)):
                raise CTRError(
                    "learn_task() got a TaskData as train: its splits and labels are inside it; pass nothing else."
                )
            data = (
                train
                if train.name == name
                else TaskData(
                    name, train.label_names, train.train, train.validation, train.test, train.source, train.notes
                )
            )
            check_task_data(data)  # the checks as_task_data makes
        else:
            data = as_task_data(name, train, validation, test, labels, text_column, label_column, pair_column, source)
        self._check_can_continue()
        self.model.check_new_task(
            data.name, data.label_names
        )  # before anything changes: a refused task leaves all as it was
        if not self._started:
            self.method.before_sequence(self.model, [data], self.training)
            self._started = True
        before = (
            list(self.tasks),
            self.results.tasks,
            self.results.acc_matrix,
            self.results.f1_matrix,
            self.model.num_tasks,
        )
        self.tasks.append(data)
        self.results = _grown(self.results, data.name)
        try:
            learn_next_task(
                self.model, self.method, self.tasks, self.training, self.results, accelerator=self.accelerator
            )
        except BaseException:
            if self.model.num_tasks == before[-1]:  # refused before the model took the task: as if never asked
                self.tasks, self.results.tasks, self.results.acc_matrix, self.results.f1_matrix = before[:-1]
            raise
        row = self.results.acc_matrix[self.results.completed_tasks - 1]
        return {t.name: row[j] for j, t in enumerate(self.tasks)}

    def learn_sequence(
        self,
        tasks: list[TaskData],
        results: ContinualResults | None = None,
        on_task_end=None,
        evaluate_test: bool = True,
    ) -> ContinualResults:
        """Learn ``tasks`` (a list of :class:`TaskData`) in order: ``loop.run_sequence`` with this
        learner's method, options and accelerator. ``results`` of an interrupted run resume it;
        ``on_task_end(model, results)`` runs after each task (``experiment.run`` saves there)."""
        if self.tasks:
            raise CTRError(
                "learn_sequence() starts a sequence: this learner has learned tasks already; "
                "continue with learn_task()."
            )
        if results is None:
            self._check_can_continue()
        self._started = True
        self.results = run_sequence(
            self.model,
            self.method,
            tasks,
            self.training,
            results=results,
            on_task_end=on_task_end,
            evaluate_test=evaluate_test,
            accelerator=self.accelerator,
        )
        self.tasks = list(tasks)
        return self.results

    def evaluate(
        self, task: str | int, data: Any = None, labels: Sequence[str] | None = None, **columns
    ) -> dict[str, float]:
        """Accuracy and macro-F1 (%) and mean loss of the model on ``data`` as task ``task``
        (a name or id), after the method's ``before_evaluate``. ``data`` as :func:`as_task_data`
        takes a split; None: the test split given to ``learn_task`` for that task."""
        task_id = self.model.task_id(task)
        name = self.model.task_names[task_id]
        if data is None:
            given = next((t for t in self.tasks if t.name == name), None)
            if given is None or not len(given.test):
                raise CTRError(f"No test data was given for task {name!r}: pass data=...")
            split = given.test
        else:
            split = as_task_data(name, data, labels=labels or self.model.label_names[task_id], **columns).train
        self.method.before_evaluate(self.model, task_id)
        return evaluate(
            self.model, split, task_id, self.training, desc=f"evaluate {name}", accelerator=self.accelerator
        )

    def card_fields(self) -> dict:
        """What a checkpoint written by this learner records beside the model: the method and its
        options, the seed, the training options and the results so far (the model card shows them)."""
        fields = {
            "method": self.method.name,
            "method_options": self.method.options(),
            "seed": self.training.seed,
            "training": self.training.to_dict(),
        }
        if self.results.completed_tasks:
            fields["progress"] = self.results.to_dict()
        return fields

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """``model.save_pretrained`` with this learner's method, options and results (model card included)."""
        self.model.save_pretrained(directory, extra=self.card_fields())

    def push_to_hub(self, repo_id: str, **kwargs):
        """``model.push_to_hub`` with this learner's method, options and results; ``kwargs`` as there."""
        return self.model.push_to_hub(repo_id, extra=self.card_fields(), **kwargs)


def _grown(results: ContinualResults, name: str) -> ContinualResults:
    """``results`` with room for one more task (a row and a column of None)."""
    n = len(results.tasks) + 1
    acc, f1 = empty_matrix(n), empty_matrix(n)
    for i, (a_row, f_row) in enumerate(zip(results.acc_matrix, results.f1_matrix)):
        acc[i][: n - 1], f1[i][: n - 1] = a_row, f_row
    results.tasks, results.acc_matrix, results.f1_matrix = [*results.tasks, name], acc, f1
    return results
