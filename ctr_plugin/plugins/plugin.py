"""What every plugin module provides (its configuration is ``config.py``'s ``PluginConfig``)."""

from __future__ import annotations

from torch import nn

from ctr_plugin.plugins.context import PluginContext


class Plugin(nn.Module):
    """A module placed after a sublayer's output dropout, before its residual LayerNorm.

    It maps hidden states (B, L, d) to (B, L, d), reads the task of each example from the shared
    :class:`PluginContext`, and grows by one task at a time with :meth:`add_task`.
    """

    def __init__(self, context: PluginContext):
        super().__init__()
        # Held outside the module tree: the context is plain data, not a submodule.
        object.__setattr__(self, "context", context)
        self.num_tasks = 0

    def add_task(self) -> None:
        """Create the parameters of one more task (task id = the old ``num_tasks``)."""
        self.num_tasks += 1

    def task_removal_refused(self, task: int) -> str | None:
        """Why task ``task``'s parts cannot be removed without changing the other tasks' outputs
        (a sentence), or None when :meth:`remove_task` may. A plugin that grows per task
        (overrides :meth:`add_task`) must say how to remove a task (override :meth:`remove_task`)."""
        if type(self).add_task is not Plugin.add_task and type(self).remove_task is Plugin.remove_task:
            return (
                f"the plugin {type(self).__name__} grows per task but does not say how to remove a task's parts "
                "(it defines no remove_task)"
            )
        return None

    def remove_task(self, task: int) -> None:
        """Remove task ``task``'s parameters; the later tasks' parts move down one id, in order."""
        self.num_tasks -= 1
