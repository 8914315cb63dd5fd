"""The house: plugin kinds are registered in plugins/ and checked by the config; the methods
never import the loop (it offers them its batching instead)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ctr_plugin.continual.methods import METHODS
from ctr_plugin.errors import CTRError
from ctr_plugin.plugins import PLUGIN_KINDS, Plugin, PluginConfig, plugin_kind, register_plugin_kind
from ctr_plugin.plugins.registry import SHIPPED_KINDS

from conftest import TINY_PLUGIN, keyword_task

PACKAGE = Path(__file__).resolve().parents[1] / "ctr_plugin"


def test_every_method_uses_a_registered_plugin_kind():
    assert {m.plugin_type for m in METHODS.values()} <= set(PLUGIN_KINDS)
    for name in PLUGIN_KINDS:
        assert PluginConfig(plugin_type=name).plugin_type == name


def test_an_unknown_plugin_kind_is_refused_by_the_config_with_the_kinds_listed():
    with pytest.raises(CTRError, match=r"Unknown plugin_type .capsnet.*adapter_per_task \(one Houlsby.*ctr \(CTR: "):
        PluginConfig(plugin_type="capsnet")
    with pytest.raises(CTRError, match="Unknown plugin_type"):
        PluginConfig.from_dict(
            TINY_PLUGIN.to_dict() | {"plugin_type": "capsnet"}
        )  # a checkpoint naming a kind this version lacks


class Scale(Plugin):
    """A plugin that halves what passes through it: enough to see it in place."""

    def __init__(self, config, hidden_size, context):
        super().__init__(context)
        self.weight = torch.nn.Parameter(torch.full((hidden_size,), 0.5))

    def forward(self, x):
        return x * self.weight


def test_each_shipped_kind_is_defined_where_the_registry_names_it_under_its_own_name():
    for name, (module, attribute) in SHIPPED_KINDS.items():
        kind = getattr(importlib.import_module(module), attribute)
        assert kind.name == name and plugin_kind(name) is kind, name


def test_a_plugin_config_is_built_and_checked_without_importing_torch():
    """The registry knows the kinds' names without loading their modules, so a config (and a
    command's flags, built from it) needs no model library."""
    probe = (
        "import sys\n"
        "from ctr_plugin.plugins import PluginConfig\n"
        "PluginConfig(plugin_type='lora_per_task', adapter_size=8)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_new_plugin_kind_is_one_registration(tiny_bert_dir, monkeypatch):
    from ctr_plugin.encoders.loading import load_encoder
    from ctr_plugin.modeling.model import ContinualModel

    monkeypatch.setattr(
        "ctr_plugin.plugins.registry.PLUGIN_KINDS", dict(PLUGIN_KINDS)
    )  # registered for this test only
    register_plugin_kind("scale", "sublayer", "halves every sublayer's output", Scale)
    assert plugin_kind("scale").placement == "sublayer"
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    model = ContinualModel(encoder, tokenizer, PluginConfig(plugin_type="scale", pooling="mean"), tiny_bert_dir)
    model.add_task("colour", ["red", "blue"])
    assert len(model.plugins) == 2 * encoder.config.num_hidden_layers and all(
        isinstance(p, Scale) for p in model.plugins
    )
    task = keyword_task("colour", [["red"], ["blue"]], n_train=4)
    batch = model.tokenize(task.train.texts, None, 16)
    # with its weight at 1 the plugin is the identity: the model then equals one without plugins
    plain_encoder, _ = load_encoder(tiny_bert_dir)
    plain = ContinualModel(plain_encoder, tokenizer, PluginConfig(plugin_type="none", pooling="mean"), tiny_bert_dir)
    plain.add_task("colour", ["red", "blue"])
    plain.heads[0].load_state_dict(model.heads[0].state_dict())
    model.eval(), plain.eval()
    task_ids = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        halved = model(**batch, task_ids=task_ids).logits
        for plugin in model.plugins:
            plugin.weight.fill_(1.0)
        identity = model(**batch, task_ids=task_ids).logits
        reference = plain(**batch, task_ids=task_ids).logits
    assert torch.allclose(identity, reference, atol=1e-5)
    assert not torch.allclose(halved, reference, atol=1e-2)  # halving every sublayer's output moves the logits
    with pytest.raises(ValueError, match="registered twice"):
        register_plugin_kind("scale", "sublayer", "again", Scale)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, as written (relative imports keep their dots), TYPE_CHECKING blocks included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_methods_never_import_the_loop():
    for path in sorted((PACKAGE / "continual" / "methods").glob("*.py")):
        imported = _imports(path)
        assert not {m for m in imported if m in ("..loop", "ctr_plugin.continual.loop") or m.endswith(".loop")}, (
            path.name
        )
    assert "ctr_plugin.continual.methods" in _imports(PACKAGE / "continual" / "loop.py")
    for shared in ("training_config.py", "batching.py", "services.py"):  # what both use lives beside them
        assert not {m for m in _imports(PACKAGE / "continual" / shared) if "loop" in m or "methods" in m}, shared


def test_no_module_outside_the_plugins_branches_on_a_plugin_kind_name():
    """What differs between kinds is each kind's behaviour (plugins/registry.py), not branches elsewhere."""
    for folder in ("modeling", "checkpoint", "continual"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Compare):
                    named = {
                        c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    } & set(PLUGIN_KINDS)
                    assert not named, (
                        f"{path.relative_to(PACKAGE)}:{node.lineno} compares with plugin kind {sorted(named)}"
                    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports: every import, lazy ones inside functions too,
    except those under ``if TYPE_CHECKING:`` (which never run), and every package module it names
    in a string, which it may import by name with importlib (a lazy face, the plugin kinds' table)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        skipped = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        found = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import (the house imports absolutely)"
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Constant) and node.value in files and "." in node.value:
                targets = [node.value]  # a submodule by its full name ("ctr_plugin" alone is the library's name)
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def test_no_import_circle_counting_lazy_imports():
    graph = _import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                loop = path[path.index(target) :] + [module, target] if target in path else [module, target]
                raise AssertionError("import circle: " + " -> ".join(loop))
            if target not in state:
                visit(target, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_a_module_named_in_a_string_counts_as_imported():
    """The registry imports a shipped kind's module by name (importlib) on its first lookup: that is
    an import, and a kind module importing the registry back would be an import circle."""
    graph = _import_graph()
    assert {module for module, _ in SHIPPED_KINDS.values()} <= graph["ctr_plugin.plugins.registry"]
    assert "ctr_plugin.plugins.registry" not in graph["ctr_plugin.plugins.ctr_layer"]


def test_nothing_inside_the_package_imports_its_face():
    for module, targets in _import_graph().items():
        if module != "ctr_plugin":
            assert "ctr_plugin" not in targets, f"{module} imports the package face (import the defining module)"


def test_no_class_over_300_lines_and_no_module_over_500():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert text.count("\n") <= 500, f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= 300, f"{path.relative_to(PACKAGE)}: class {node.name} is {size} lines"


def test_at_most_eight_modules_loose_at_the_top_level():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= 8, loose


def test_ruff_keeps_lines_at_most_119_characters():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    ruff = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff["line-length"] <= 119
    assert "C901" in ruff["lint"]["select"] or "C90" in ruff["lint"]["select"]


# The rooms, floor by floor: a module may import from its own room and from rooms on lower floors
# only (docs/architecture.md draws the same picture).
FLOORS = [
    {"_version", "errors"},
    {"options", "search_space"},
    {"data", "reporting"},
    {"encoders", "plugins"},
    {"checkpoint"},
    {"modeling"},
    {"continual"},
    {"experiments"},
    {"commands"},
    {"bench"},
    {"ctr_plugin"},  # the package face
]


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_import_goes_to_the_same_room_or_a_lower_floor():
    floor = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
    rooms_on_disk = {_room(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms_on_disk == set(floor), "a room is missing from FLOORS (or FLOORS names one that is gone)"
    upward = [
        f"{module} -> {target}"
        for module, targets in _import_graph().items()
        for target in targets
        if _room(target) != _room(module) and floor[_room(target)] >= floor[_room(module)]
    ]
    assert not upward, upward
