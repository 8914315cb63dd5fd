"""HAT's training rules, watched: a ``ContinualModel`` whose plugins are HAT-masked, trained outside
its method's rules (a plain optimizer loop, or transformers' ``Trainer``), warns once
(``UnprotectedTrainingWarning``), since HAT's protection of earlier tasks would silently be lost.

``TrainingRules`` is the mixin of ``ContinualModel`` that holds this: ``method_rules`` (used by the
training loop and ``ContinualTrainer``) and the check its forward pass makes.
"""

from __future__ import annotations

import contextlib
import warnings

import torch


class UnprotectedTrainingWarning(UserWarning):
    """A HAT-masked model is trained without its method's rules: earlier tasks will be forgotten."""


class TrainingRules:
    """Mixin of ``ContinualModel`` (it reads ``self.training`` and ``self.kind.hat_masked``)."""

    # Set while a method's rules are applied to the training steps (``method_rules``); a backward
    # pass outside them warns once per model. Class-level defaults; each model sets its own.
    _rules_applied_by: str | None = None
    _warned_unprotected: bool = False

    @contextlib.contextmanager
    def method_rules(self, method_name: str):
        """Marks the training steps taken inside as governed by ``method_name``'s rules (the loop
        and ``ContinualTrainer`` use it); outside it, a backward pass through a HAT-masked model
        in training mode warns (``UnprotectedTrainingWarning``, once per model)."""
        previous, self._rules_applied_by = self._rules_applied_by, method_name
        try:
            yield self
        finally:
            self._rules_applied_by = previous

    def _watch_for_unprotected_training(self, logits: torch.Tensor) -> None:
        """Called by the forward pass: when this is unprotected training of a HAT-masked model, hook
        ``logits`` so that a backward pass through them warns."""
        if (
            self.training
            and logits.requires_grad
            and self._rules_applied_by is None
            and not self._warned_unprotected
            and self.kind.hat_masked
        ):
            logits.register_hook(self._warn_if_unprotected)

    def _warn_if_unprotected(self, _grad: torch.Tensor | None = None) -> None:
        """Warn, once, that a HAT-masked model is being trained without its method's rules."""
        if self._warned_unprotected:
            return
        self._warned_unprotected = True
        warnings.warn(
            "This ContinualModel's plugins are HAT-masked, and it is being trained outside "
            "ctr_plugin's rules (a plain optimizer loop, or transformers' Trainer): HAT's gradient "
            "masking, gradient compensation, temperature schedule and mask accumulation are not "
            "applied, so earlier tasks' weights WILL change (forgetting) and the task trained now "
            "will not be protected later. Train with ctr_plugin.ContinualLearner or "
            "ctr_plugin.ContinualTrainer instead.",
            UnprotectedTrainingWarning,
            stacklevel=2,
        )
