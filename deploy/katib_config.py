"""katib-nas's entries in Katib's katib-config, added, updated or removed without touching anything else.

Katib reads `runtime.suggestions` of the katib-config ConfigMap for every new Experiment and takes the
last entry whose algorithmName matches. Registration keeps exactly one entry per katib-nas algorithm
(replaced in place when present, appended after the last suggestion otherwise) and leaves every other
line of the text as it was: stock suggestions, metrics collectors, early stopping and the init settings
of whichever Katib install variant wrote it. Unregistering removes exactly those lines again, so a
register followed by an unregister gives back the original text byte for byte.

On request it also lists the distributed examples' trial kinds (TrainJob, PyTorchJob) in
`init.controller.trialResources`, which some installs lack; that list stays when unregistering (other
Experiments may use the kinds), and Katib's controller reads it only when it starts.

The text is edited line by line where the lists are block sequences (as in every Katib install);
the result is always parsed back and compared with the intended content, and anything unusual (a flow
sequence, a missing list) falls back to writing the whole document with PyYAML.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from katib_nas.contract.algorithm_names import ALGORITHM_NAMES, in_prose
from katib_nas.contract.errors import InvalidInput

from .images import SUGGESTION_IMAGE

#: The algorithms `katib-nas serve` answers for, all from the one suggestion image.
ALGORITHMS = tuple(ALGORITHM_NAMES)
#: Katib's ConfigMap, in the namespace Katib installs into, and the data key Katib reads.
CONFIGMAP, KATIB_NAMESPACE = "katib-config", "kubeflow"
CONFIG_KEY = "katib-config.yaml"
#: Within Katib's default limits for a suggestion (500m CPU, 100Mi memory); the service uses about 58 MiB.
RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "32Mi"},
    "limits": {"cpu": "500m", "memory": "100Mi", "ephemeral-storage": "256Mi"},
}
#: Kubernetes' restricted Pod Security Standard for the suggestion container. The image runs as UID 10001
#: (no runAsUser here, so OpenShift can assign its own) and writes nothing: a read-only root suffices.
SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


#: The trial kinds of the distributed examples, as Katib's init.controller.trialResources names them.
DISTRIBUTED_TRIAL_KINDS = ("TrainJob.v1alpha1.trainer.kubeflow.org", "PyTorchJob.v1.kubeflow.org")
#: What Katib's controller watches when trialResources is empty or absent (v0.19.0,
#: pkg/apis/config/v1beta1/defaults.go: DefaultTrialResources); kept when the kinds are added to such a config.
KATIB_DEFAULT_TRIAL_KINDS = ("Job.v1.batch",)
TRIAL_RESOURCES_PATH = ("init", "controller", "trialResources")


class KatibConfigError(InvalidInput):
    """The katib-config text cannot be read as Katib's configuration."""


@dataclass(frozen=True)
class Change:
    """The new text, which algorithms it adds, updates or removes, and which trial kinds it lists."""

    text: str
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    listed_kinds: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.listed_kinds)


def suggestion_entries(image: str = SUGGESTION_IMAGE) -> list[dict[str, Any]]:
    """katib-config `runtime.suggestions` entries for every katib-nas algorithm."""
    return [{"algorithmName": name, "image": image, "resources": copy.deepcopy(RESOURCES),
             "securityContext": copy.deepcopy(SECURITY_CONTEXT)} for name in ALGORITHMS]


#: The files of manifests/katib-config, the kustomize component that adds the same entries as `register`.
COMPONENT_HEADER = """\
# katib-nas's algorithms in Katib's katib-config, for a Katib managed with kustomize: add this component to
# the kustomization that builds Katib (it expects Katib's katib-config ConfigMap there) and it sets only the
# runtime.suggestions entries of {names}; everything else in katib-config
# stays as the Katib base has it. Needs kustomize v5.8.0 or newer (replacements inside the YAML text of a
# ConfigMap key); older versions fail the build with "wrong node kind: expected MappingNode".
{trial_kinds}#
#   components:
#     - ../katib-nas/manifests/katib-config     # a path relative to that kustomization
#
# Written by `katib-nas register --component DIR` (for another image: --image); do not edit by hand.
"""
ENTRIES_HEADER = """\
# The katib-config runtime.suggestions entries of katib-nas's algorithms, read by this component's
# replacements. Annotated local-config: kustomize uses it and leaves it out of the output.
# The same entries as `katib-nas register` writes; written by `katib-nas register --component DIR`.
"""


TRIAL_KINDS_NOTE = """\
# It also lists the trial kinds {kinds} in init.controller.trialResources where they are
# missing (Katib's controller reads that list when it starts: restart katib-controller after applying).
"""


def trial_kind_replacements() -> list[dict[str, Any]]:
    """Component replacements that list Katib's default trial kind and the distributed examples' kinds in
    init.controller.trialResources: each appended unless that name is listed already (kustomize's `[=value]`)."""
    path = "data.katib-config\\.yaml." + ".".join(TRIAL_RESOURCES_PATH)
    return [{"sourceValue": kind,
             "targets": [{"select": {"kind": "ConfigMap", "name": CONFIGMAP},
                          "fieldPaths": [f"{path}.[={kind}]"], "options": {"create": True}}]}
            for kind in (*KATIB_DEFAULT_TRIAL_KINDS, *DISTRIBUTED_TRIAL_KINDS)]


#: What every file of the component says of its origin: a file without it in the folder is someone else's.
GENERATED_MARK = "katib-nas register --component DIR"


def foreign_component_files(directory: Path) -> list[str]:
    """The component's file names that stand in `directory` but were not written by `register --component`."""
    names = ("kustomization.yaml", "suggestions.yaml")
    return [name for name in names if (directory / name).exists()
            and GENERATED_MARK not in (directory / name).read_text(errors="replace")]


def component_files(image: str = SUGGESTION_IMAGE, trial_kinds: bool = False) -> dict[str, str]:
    """kustomization.yaml and suggestions.yaml of a kustomize Component that sets our katib-config entries (and,
    with `trial_kinds`, lists the trial kinds of `trial_kind_replacements`)."""
    entries = suggestion_entries(image)
    source = {"apiVersion": "katib-nas/v1", "kind": "SuggestionEntries",
              "metadata": {"name": "katib-nas", "annotations": {"config.kubernetes.io/local-config": "true"}},
              "entries": {entry["algorithmName"]: entry for entry in entries}}
    replacements = [{"source": {"kind": "SuggestionEntries", "name": "katib-nas",
                                "fieldPath": f"entries.{name}"},
                     "targets": [{"select": {"kind": "ConfigMap", "name": CONFIGMAP},
                                  "fieldPaths": [f"data.katib-config\\.yaml.runtime.suggestions.[algorithmName={name}]"],
                                  "options": {"create": True}}]} for name in ALGORITHMS]
    note = ""
    if trial_kinds:
        replacements += trial_kind_replacements()
        kinds = ", ".join(k.split(".")[0] for k in (*KATIB_DEFAULT_TRIAL_KINDS, *DISTRIBUTED_TRIAL_KINDS))
        note = TRIAL_KINDS_NOTE.format(kinds=kinds)
    header = COMPONENT_HEADER.format(names=in_prose(), trial_kinds=note)
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
                     "resources": ["suggestions.yaml"], "replacements": replacements}
    return {"kustomization.yaml": header + yaml.safe_dump(kustomization, sort_keys=False),
            "suggestions.yaml": ENTRIES_HEADER + yaml.safe_dump(source, sort_keys=False)}


def register(text: str, entries: Sequence[dict[str, Any]]) -> Change:
    """The katib-config text with `entries` in runtime.suggestions (one per algorithmName)."""
    document = parse(text)
    present = [(name, entry) for name, entry in _named(document) if name in _names(entries)]
    current = dict(reversed(present))  # the first entry of each name is the one replaced
    repeated = {name for name, _ in present if [n for n, _ in present].count(name) > 1}
    added = tuple(e["algorithmName"] for e in entries if e["algorithmName"] not in current)
    updated = tuple(e["algorithmName"] for e in entries
                    if e["algorithmName"] in current and (current[e["algorithmName"]] != e
                                                          or e["algorithmName"] in repeated))
    if not (added or updated):
        return Change(text)
    expected = _with_suggestions(document, _merged(_suggestions(document), entries))
    return Change(_edited(text, expected, entries), added, updated)


def unregister(text: str, names: Sequence[str] = ALGORITHMS) -> Change:
    """The katib-config text without the runtime.suggestions entries of `names`."""
    document = parse(text)
    removed = tuple(dict.fromkeys(n for n, _ in _named(document) if n in names))
    if not removed:
        return Change(text)
    kept = [s for s in _suggestions(document) if _name(s) not in names]
    expected = _with_suggestions(document, kept)
    return Change(_edited(text, expected, [], set(names)), removed=removed)


def with_trial_kinds(text: str, kinds: Sequence[str] = DISTRIBUTED_TRIAL_KINDS) -> Change:
    """The katib-config text whose init.controller.trialResources also lists `kinds` (appended; Katib's
    default kind kept when the list was empty or absent)."""
    document = parse(text)
    listed = _trial_kinds(document)
    missing = tuple(kind for kind in kinds if kind not in listed)
    if not missing:
        return Change(text)
    expected = copy.deepcopy(document)
    if expected.get("init") is None:
        expected["init"] = {}
    if expected["init"].get("controller") is None:
        expected["init"]["controller"] = {}
    expected["init"]["controller"]["trialResources"] = list(listed or KATIB_DEFAULT_TRIAL_KINDS) + list(missing)
    edited = _append_scalars(text, TRIAL_RESOURCES_PATH, missing) if listed else None
    if edited is None or yaml.safe_load(edited) != expected:
        edited = yaml.safe_dump(expected, sort_keys=False)
    return Change(edited, listed_kinds=missing)


def _trial_kinds(document: dict[str, Any]) -> list[str]:
    """init.controller.trialResources; KatibConfigError where the path holds something else than mappings and a
    list of names."""
    node: Any = document
    for depth, key in enumerate(TRIAL_RESOURCES_PATH):
        where = ".".join(TRIAL_RESOURCES_PATH[:depth]) or CONFIG_KEY
        if node is None:
            return []
        if not isinstance(node, dict):
            raise KatibConfigError(f"{CONFIG_KEY}: {where} must be a mapping")
        node = node.get(key)
    if node is None:
        return []
    if not isinstance(node, list) or not all(isinstance(kind, str) for kind in node):
        raise KatibConfigError(f"{CONFIG_KEY}: {'.'.join(TRIAL_RESOURCES_PATH)} must be a list of kind names")
    return node


def parse(text: str) -> dict[str, Any]:
    """The katib-config document; KatibConfigError unless it is a mapping with a suggestions list (or none)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise KatibConfigError(f"{CONFIG_KEY} is not valid YAML{where}: {getattr(err, 'problem', None) or err}"
                               ) from None
    if not isinstance(document, dict):
        raise KatibConfigError(f"{CONFIG_KEY} is not a KatibConfig mapping")
    runtime = document.get("runtime")
    if runtime is not None and not isinstance(runtime, dict):
        raise KatibConfigError(f"{CONFIG_KEY}: runtime must be a mapping")
    suggestions = (runtime or {}).get("suggestions")
    if suggestions is not None and not isinstance(suggestions, list):
        raise KatibConfigError(f"{CONFIG_KEY}: runtime.suggestions must be a list")
    return document


# --- the intended content -------------------------------------------------------------------------------

def _suggestions(document: dict[str, Any]) -> list[Any]:
    return list((document.get("runtime") or {}).get("suggestions") or [])


def _name(entry: Any) -> str | None:
    return entry.get("algorithmName") if isinstance(entry, dict) else None


def _names(entries: Sequence[dict[str, Any]]) -> set[str]:
    return {e["algorithmName"] for e in entries}


def _named(document: dict[str, Any]) -> list[tuple[str | None, Any]]:
    return [(_name(s), s) for s in _suggestions(document)]


def _merged(suggestions: list[Any], entries: Sequence[dict[str, Any]]) -> list[Any]:
    """Ours in place of the first entry of the same name (later duplicates dropped), the rest appended."""
    ours = {e["algorithmName"]: e for e in entries}
    result, placed = [], set()
    for entry in suggestions:
        name = _name(entry)
        if name not in ours:
            result.append(entry)
        elif name not in placed:
            result.append(ours[name])
            placed.add(name)
    return result + [entry for name, entry in ours.items() if name not in placed]


def _with_suggestions(document: dict[str, Any], suggestions: list[Any]) -> dict[str, Any]:
    result = copy.deepcopy(document)
    runtime = result.get("runtime")
    if not isinstance(runtime, dict):
        runtime = result["runtime"] = {}
    runtime["suggestions"] = suggestions
    return result


# --- editing the text -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Item:
    name: str | None
    first_line: int
    last_line: int
    dash_column: int


def _edited(text: str, expected: dict[str, Any], entries: Sequence[dict[str, Any]],
            removed: set[str] | None = None) -> str:
    """`text` edited to `expected` line by line when possible, else `expected` written by PyYAML."""
    edited = _edit_lines(text, entries, removed or set())
    if edited is not None and yaml.safe_load(edited) == expected:
        return edited
    return yaml.safe_dump(expected, sort_keys=False)


def _edit_lines(text: str, entries: Sequence[dict[str, Any]], removed: set[str]) -> str | None:
    items = _block_items(text)
    if not items:
        return None
    ours = {e["algorithmName"]: e for e in entries}
    edits: list[tuple[int, int, str]] = []
    placed: set[str] = set()
    for item in items:
        if item.name in removed or (item.name in ours and item.name in placed):
            edits.append((item.first_line, item.last_line + 1, ""))
        elif item.name in ours:
            edits.append((item.first_line, item.last_line + 1, _render(ours[item.name], item.dash_column)))
            placed.add(item.name)
    appended = "".join(_render(e, items[-1].dash_column) for name, e in ours.items() if name not in placed)
    if appended:
        edits.append((items[-1].last_line + 1, items[-1].last_line + 1, appended))
    return _spliced(text, edits)


def _append_scalars(text: str, path: Sequence[str], values: Sequence[str]) -> str | None:
    """`values` appended to the block sequence of scalars at `path`, at its items' indentation; None for any
    other shape."""
    found = _block_sequence(text, path)
    if found is None or not all(isinstance(item, yaml.ScalarNode) for item in found[0].value):
        return None
    sequence, lines = found
    dash = _dash_column(lines, sequence.value[-1])
    if dash is None:
        return None
    end = _last_line(sequence.value[-1]) + 1
    return _spliced(text, [(end, end, "".join(f"{' ' * dash}- {value}\n" for value in values))])


def _spliced(text: str, edits: list[tuple[int, int, str]]) -> str:
    """`text` with each (first line, line after the last, replacement) edit made; an insertion after a last line
    without a newline gets one first, and a text without a final newline keeps it so."""
    lines = text.splitlines(keepends=True)
    for first, after, replacement in sorted(edits, key=lambda edit: edit[0], reverse=True):
        if replacement and first == len(lines) and lines and not lines[-1].endswith("\n"):
            replacement = "\n" + replacement
        lines[first:after] = [replacement] if replacement else []
    edited = "".join(lines)
    if not text.endswith("\n") and edited.endswith("\n"):
        edited = edited[:-1]
    return edited


def _block_items(text: str) -> list[_Item]:
    """runtime.suggestions items of a block sequence, with their line spans; [] for any other shape."""
    found = _block_sequence(text, ("runtime", "suggestions"))
    if found is None:
        return []
    sequence, lines = found
    items = []
    for node in sequence.value:
        dash = _dash_column(lines, node)
        if not isinstance(node, yaml.MappingNode) or dash is None:
            return []
        name_node = _child(node, "algorithmName")
        name = name_node.value if isinstance(name_node, yaml.ScalarNode) else None
        items.append(_Item(name, node.start_mark.line, _last_line(node), dash))
    return items


def _block_sequence(text: str, path: Sequence[str]) -> tuple[yaml.SequenceNode, list[str]] | None:
    """The non-empty block sequence at `path` and the text's lines; None for any other shape."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for key in path:
        node = _child(node, key)
    if not isinstance(node, yaml.SequenceNode) or node.flow_style or not node.value:
        return None
    return node, text.splitlines()


def _dash_column(lines: list[str], item: yaml.Node) -> int | None:
    """The column of the `-` that opens a block sequence item, when only spaces stand before it."""
    line = lines[item.start_mark.line]
    dash = line.rfind("-", 0, item.start_mark.column)
    return None if dash < 0 or line[:dash].strip() else dash


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value for k, value in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _last_line(node: yaml.Node) -> int:
    """The last line a node's content occupies."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.value:
        last = node.value[-1]
        return _last_line(last[1] if isinstance(node, yaml.MappingNode) else last)
    end = node.end_mark
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def _render(entry: dict[str, Any], dash_column: int) -> str:
    text = yaml.safe_dump([entry], sort_keys=False, default_flow_style=False)
    return "".join(" " * dash_column + line for line in text.splitlines(keepends=True))
