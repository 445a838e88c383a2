"""Component names: TransformerLens's and Hugging Face's spellings to hydra's.

hydra names a component by kind and layer (``attn.3``, ``mlp.3``,
``head.3.5``, ``neuron.3.17``, ``resid_pre.3``, ``q.3.5``, ``embed``).
A TransformerLens user thinks in hook names (``blocks.3.attn.hook_z``,
``blocks.3.hook_mlp_out``); :func:`to_hydra` translates those that have an
exact counterpart and refuses the others with hydra's spelling in the
message. A head or neuron index is given as a ``(name, index)`` tuple (as
TransformerLens's own patching helpers do), as ``name[index]`` or as
``name.index``. A ``*`` layer stays a pattern (``blocks.*.hook_mlp_out``
-> ``mlp.*``).
"""
from __future__ import annotations

import numbers
import re
from typing import Any, Dict, List, Optional, Tuple, Union

Name = Union[str, Tuple[str, int], List[Any]]

HYDRA_SPELLING = ("embed, attn.L, mlp.L, head.L.H, neuron.L.N, resid_pre.L, resid_mid.L, "
                  "resid_post.L, q.L.H, k.L.H, v.L.H, pattern.L.H (L a layer or *, H a head, "
                  "N a neuron)")

# TransformerLens hook (after "blocks.L.") -> (hydra kind without an index,
# hydra kind with an index). None where that form has no hydra counterpart.
_BLOCK_HOOKS: Dict[str, Tuple[Optional[str], Optional[str]]] = {
    "hook_resid_pre": ("resid_pre", None),
    "hook_resid_mid": ("resid_mid", None),
    "hook_resid_post": ("resid_post", None),
    "hook_attn_out": ("attn", None),
    "attn.hook_z": ("attn", "head"),
    "attn.hook_result": ("attn", "head"),
    "hook_mlp_out": ("mlp", None),
    "mlp.hook_post": (None, "neuron"),
    "attn.hook_q": (None, "q"),
    "attn.hook_k": (None, "k"),
    "attn.hook_v": (None, "v"),
    "attn.hook_pattern": (None, "pattern"),
}

# Hugging Face module paths (after the layer) -> hydra kind.
_HF_MODULES = {"self_attn": "attn", "attn": "attn", "attention": "attn", "mlp": "mlp"}

_TL_BLOCK = re.compile(r"^blocks\.(\d+|\*)\.(.+?)(?:\[(\d+)\]|\.(\d+))?$")
_HF_LAYER = re.compile(r"^(?:model\.layers|transformer\.h|gpt_neox\.layers|model\.decoder\.layers)"
                       r"\.(\d+|\*)\.([a-z_]+)$")


def _refuse(name: str, why: str) -> ValueError:
    return ValueError(f"component {name!r}: {why}; hydra spells components {HYDRA_SPELLING} "
                      "(e.g. blocks.3.attn.hook_z -> attn.3, (blocks.3.attn.hook_z, 5) -> head.3.5, "
                      "blocks.3.hook_mlp_out -> mlp.3, blocks.3.hook_resid_pre -> resid_pre.3)")


def is_foreign(name: Any) -> bool:
    """True when name is in TransformerLens's or Hugging Face's spelling
    (a name this module translates or refuses), False for hydra's own."""
    if isinstance(name, (tuple, list)):
        return True
    return isinstance(name, str) and (name.startswith(("blocks.", "hook_", "model.", "transformer.",
                                                        "gpt_neox.")))


def to_hydra(name: Name) -> str:
    """hydra's spelling of a component name.

    hydra's own names pass through unchanged. TransformerLens hook names
    (``blocks.3.attn.hook_z`` -> ``attn.3``; with a head index -> ``head.3.H``;
    ``blocks.3.hook_mlp_out`` -> ``mlp.3``; ``blocks.3.hook_resid_pre`` ->
    ``resid_pre.3``; ``blocks.3.mlp.hook_post`` with an index -> ``neuron.3.N``;
    ``hook_embed`` -> ``embed``) and Hugging Face module paths
    (``model.layers.3.self_attn`` -> ``attn.3``) are translated.

    Raises ValueError naming hydra's spelling for a name with no exact
    counterpart (``blocks.3.ln1.hook_scale``, ``blocks.3.mlp.hook_post``
    without a neuron, ...).
    """
    index: Optional[int] = None
    if isinstance(name, (tuple, list)):
        if len(name) != 2 or not isinstance(name[0], str) or not isinstance(name[1], numbers.Integral) \
                or isinstance(name[1], bool):
            raise _refuse(str(name), "expected a (hook name, head or neuron index) pair")
        hook: Any = name[0]
        index = int(name[1])
        name = hook
    if not isinstance(name, str):
        raise TypeError(f"component names are strings, not {type(name).__name__} ({name!r})")
    if not is_foreign(name):
        if index is not None:
            raise _refuse(name, "an index goes with a TransformerLens hook name, not a hydra name")
        return name
    if name in ("hook_embed", "embed"):
        if index is not None:
            raise _refuse(name, "the embeddings take no index")
        return "embed"
    m = _HF_LAYER.match(name)
    if m:
        kind = _HF_MODULES.get(m.group(2))
        if kind is None or index is not None:
            raise _refuse(name, f"the module {m.group(2)!r} has no hydra counterpart")
        return f"{kind}.{m.group(1)}"
    m = _TL_BLOCK.match(name)
    if not m:
        raise _refuse(name, "not a TransformerLens hook name hydra knows")
    layer, hook = m.group(1), m.group(2)
    suffix = m.group(3) or m.group(4)
    if suffix is not None:
        if index is not None:
            raise _refuse(name, "the index is given twice")
        index = int(suffix)
    if hook not in _BLOCK_HOOKS:
        raise _refuse(name, f"the hook {hook!r} has no hydra counterpart")
    whole, part = _BLOCK_HOOKS[hook]
    if index is None:
        if whole is None:
            raise _refuse(name, f"{hook} names one {part} at a time: give its index")
        return f"{whole}.{layer}"
    if part is None:
        raise _refuse(name, f"{hook} takes no index")
    return f"{part}.{layer}.{index}"


def translate_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of a job document with the component names of
    ``ablations.components`` and of every ``ablations.groups`` member in
    hydra's spelling (see :func:`to_hydra`). Raises ValueError naming the
    field on a name with no counterpart. Other fields are left as they are."""
    abl = spec.get("ablations") if isinstance(spec, dict) else None
    if not isinstance(abl, dict):
        return spec
    out = dict(spec)
    abl = dict(abl)
    comps = abl.get("components")
    if isinstance(comps, list):
        new = []
        for k, c in enumerate(comps):
            try:
                new.append(to_hydra(c))
            except ValueError as e:
                raise ValueError(f"ablations.components[{k}]: {e}") from None
        abl["components"] = new
    groups = abl.get("groups")
    if isinstance(groups, dict):
        new_groups = {}
        for g, members in groups.items():
            if isinstance(members, list):
                try:
                    members = [to_hydra(c) for c in members]
                except ValueError as e:
                    raise ValueError(f"ablations.groups.{g}: {e}") from None
            new_groups[g] = members
        abl["groups"] = new_groups
    out["ablations"] = abl
    return out
