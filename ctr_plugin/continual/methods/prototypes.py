"""Template-based classification on the frozen encoder: one prototype per class, the mean of the
class's pooled features, and no gradient training at all.

* ``ncm``: cosine nearest class mean, as SimpleCIL (Zhou, Cai, Ye, Zhan and Liu, "Revisiting
  class-incremental learning with pre-trained models: generalizability and adaptivity are all you
  need", 2023): the class of x is argmax_c cos(f(x), mu_c).
* ``slda``: streaming linear discriminant analysis (Hayes and Kanan, "Lifelong machine learning
  with deep streaming linear discriminant analysis", CVPR-W 2020): running class means mu_c and
  one covariance Sigma shared by all classes, and the linear discriminant with shrinkage eps

      Lambda = ((1 - eps) Sigma + eps I)^-1,   g_c(x) = mu_c^T Lambda f(x) - 1/2 mu_c^T Lambda mu_c.

  Sigma is the pooled within-class covariance of every example seen, (1/N) sum_i (f_i -
  mu_{y_i})(f_i - mu_{y_i})^T, kept exactly as the examples stream in (each batch merged by the
  parallel-variance formula of Chan, Golub and LeVeque); the paper's per-example update weights a
  new deviation by t / (t + 1) with t the examples seen over all classes, an approximation of the
  same matrix that depends on the order of the stream.

Both classifiers are linear in f(x), so each is written into the model's heads (cosine: W = the
unit-length means, b = 0, since |f(x)| is the same for every class; SLDA: W = Lambda M, b as
above): the checkpoint saves them as any head, and every path that predicts (the loop's tests,
``predict``, a loaded checkpoint) serves them unchanged. The features f are what the heads read:
the encoder's pooled output (``pooling``: ``mean`` suits a frozen encoder), through the plugins of
the model where it has any.

Nothing is trained: a head is frozen when its task is added, so the loop, finding no trainable
parameter, runs no epoch (the training options ``epochs``, ``lr`` and the like are moot), and the
class statistics are taken in one pass over the task's training examples after it. Task-IL: each
task's head holds its own classes' prototypes. With the head shared by all tasks (Domain-IL: the
same classes again; Class-IL: a head that grows with every task's classes), a task's labels are
the head's rows of their class-space ids (:meth:`PrototypeMethod.head_rows`): the statistics are
kept per head and row, merged when a class comes again, and grown with the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctr_plugin.continual.methods.base import ContinualMethod
from ctr_plugin.continual.services import LoopServices
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import Range, option
from ctr_plugin.search_space import LogUniform


@torch.no_grad()
def pooled_features(model: ContinualModel, split: Split, task: int, services: LoopServices) -> torch.Tensor:
    """(N, hidden) float64, on the CPU: the pooled features the heads read for every example of
    ``split`` (of task ``task``), in order, in evaluation mode, batched as the loop batches
    training (``services``), so at the run's maximum length."""
    features: list[torch.Tensor] = []
    hook = model.head_dropout.register_forward_hook(lambda _m, _inputs, output: features.append(output.detach()))
    try:
        with model.evaluating():
            for inputs, task_ids, _labels in services.training_batches(model, split, list(range(len(split))), task):
                model(**inputs, task_ids=task_ids)
    finally:
        hook.remove()
    return torch.cat(features).double().cpu() if features else torch.zeros(0, model.hidden_size, dtype=torch.float64)


@dataclass
class ClassStatistics:
    """Per class (a row of one head): the number of examples and the sum of their features."""

    counts: torch.Tensor  # (C,) float64
    sums: torch.Tensor  # (C, hidden) float64

    @classmethod
    def empty(cls, classes: int, hidden: int) -> ClassStatistics:
        return cls(torch.zeros(classes, dtype=torch.float64), torch.zeros(classes, hidden, dtype=torch.float64))

    def grown(self, classes: int) -> ClassStatistics:
        """These statistics with rows added (empty) up to ``classes`` (a head grown with new classes)."""
        extra = classes - len(self.counts)
        if extra <= 0:
            return self
        return ClassStatistics(F.pad(self.counts, (0, extra)), F.pad(self.sums, (0, 0, 0, extra)))

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Count examples ``features`` (N, hidden) of classes ``labels`` (N,) in."""
        self.counts += torch.bincount(labels, minlength=len(self.counts)).double()
        self.sums.index_add_(0, labels, features)

    @property
    def means(self) -> torch.Tensor:
        """(C, hidden): each class's mean feature; 0 for a class without examples."""
        return self.sums / self.counts.clamp(min=1)[:, None]


@dataclass
class PrototypeMethod(ContinualMethod):
    """The two prototype classifiers' common part: class statistics per head, heads written from them."""

    plugin_type = "none"
    needs_task_data = True  # the prototypes are taken from each task's training examples
    gradient_training = False  # nothing is trained: tuning searches only the method's own options
    resumable = False  # the class counts (for a class met again) and SLDA's covariance are not in the checkpoint
    # Domain-/Class-IL: one shared head over the class space, its rows the prototypes (head_rows)
    when_task_unknown = "shared_head"
    scenarios = ("task", "domain", "class")

    def __post_init__(self):
        self.statistics: dict[int, ClassStatistics] = {}  # per head index

    def head_rows(self, model: ContinualModel, task: int) -> tuple[int, list[int]]:
        """The head (its index in ``model.heads``) that classifies task ``task``'s examples, and the
        row of each of the task's labels: the task's own head and its label ids (per-task heads,
        Task-IL), or the shared head and the labels' class-space ids (``modeling/scenario_heads.py``)."""
        if model.scenario.shared_head:
            return 0, list(model.scenario.class_ids[task])
        return task, list(range(len(model.label_names[task])))

    def before_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        head, _ = self.head_rows(model, task)
        model.heads[head].requires_grad_(False)  # written in after_task, never trained

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        head, rows = self.head_rows(model, task)
        features = pooled_features(model, data.train, task, self.services)
        labels = torch.tensor(rows, dtype=torch.long)[torch.tensor(data.train.labels, dtype=torch.long)]
        classes = model.heads[head].out_features
        stats = self.statistics.get(head, ClassStatistics.empty(classes, model.hidden_size)).grown(classes)
        self.observe(stats, features, labels)
        stats.add(features, labels)
        self.statistics[head] = stats
        self.write_heads(model)

    def observe(self, stats: ClassStatistics, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Called with each task's features before they join ``stats`` (SLDA's covariance)."""

    @torch.no_grad()
    def write_heads(self, model: ContinualModel) -> None:
        for head, stats in self.statistics.items():
            weight, bias = self.classifier(stats.means)
            model.heads[head].weight.copy_(weight)
            model.heads[head].bias.copy_(bias)

    def classifier(self, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (C, hidden), bias (C,)) of the linear head that classifies by ``means``."""
        raise NotImplementedError


@dataclass
class NCM(PrototypeMethod):
    name = "ncm"

    def classifier(self, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # argmax_c cos(f, mu_c) = argmax_c f . mu_c / |mu_c|: the logits are |f| cos(f, mu_c)
        return F.normalize(means, dim=1), torch.zeros(len(means), dtype=means.dtype)


@dataclass
class SLDA(PrototypeMethod):
    name = "slda"
    # Up to 1 (Lambda = I: Euclidean nearest mean with a bias): a task of a few hundred examples in
    # a 384-wide feature space gives a rank-deficient Sigma, which the paper's 1e-4 barely shrinks.
    search_space = {"shrinkage": LogUniform(1e-4, 1.0)}

    shrinkage: float = option(
        1e-4,
        "eps: the covariance is shrunk to (1 - eps) Sigma + eps I before it is inverted (the paper's 1e-4)",
        Range("float", 0, 1, low_open=True),
    )

    def __post_init__(self):
        super().__post_init__()
        self.scatter: torch.Tensor | None = None  # (hidden, hidden): sum over examples of (f - mu_y)(f - mu_y)^T
        self.seen = 0  # N: the examples the scatter holds

    def observe(self, stats: ClassStatistics, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Merge the task's within-class scatter into the shared one (Chan et al.): per class c with
        n_a examples of mean mu_a so far and n_b new ones of mean m_b and scatter S_b, the pooled
        scatter gains S_b + n_a n_b / (n_a + n_b) (mu_a - m_b)(mu_a - m_b)^T."""
        if self.scatter is None:
            self.scatter = torch.zeros(features.shape[1], features.shape[1], dtype=torch.float64)
        for c in labels.unique().tolist():
            rows = features[labels == c]
            n_a, n_b = float(stats.counts[c]), len(rows)
            m_b = rows.mean(0)
            centred = rows - m_b
            self.scatter += centred.T @ centred
            if n_a:
                d = stats.sums[c] / n_a - m_b
                self.scatter += (n_a * n_b / (n_a + n_b)) * torch.outer(d, d)
        self.seen += len(labels)

    def precision(self) -> torch.Tensor:
        """Lambda = ((1 - eps) Sigma + eps I)^-1, Sigma = scatter / N."""
        sigma = self.scatter / max(1, self.seen)
        eye = torch.eye(len(sigma), dtype=sigma.dtype)
        return torch.linalg.inv((1 - self.shrinkage) * sigma + self.shrinkage * eye)

    def classifier(self, means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight = means @ self.precision()  # rows mu_c^T Lambda (Lambda is symmetric)
        return weight, -0.5 * (weight * means).sum(1)
