"""Which NEST model a node type becomes, with which parameters.

Mirrors BMTK 1.2.0 PointNet (sonata_adaptors.PointNodeAdaptor.preprocess_node_types and
glif_utils.converter_builtin): a node type whose ``model_template`` starts with
``nest:glif`` and whose dynamics JSON says ``"type": "GLIF"`` holds Allen Cell Types
parameters in SI units; they are converted to NEST's built-in ``glif_psc`` /
``glif_psc_bix`` model in NEST units (mV, nS, pF, ms, pA). Any other ``nest:<model>``
is created as is, with the dynamics JSON as its parameter dict.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sonatarun.engines.base import CellBatch
from sonatarun.errors import EngineError

POINT_MODEL_TYPES = ("point_neuron", "point_process", "point_soma")
VIRTUAL_MODEL_TYPES = ("virtual",)

# BMTK hard-codes the synaptic time constants of the converted GLIF models.
GLIF_TAU_SYN = [5.5, 8.5, 2.8, 5.8]
GLIF_BIX_TAU_RISE = [5.0, 5.0, 5.0, 5.0]
GLIF_BIX_TAU_DECAY = [10.0, 10.0, 10.0, 10.0]

# Allen model name -> (NEST model, spike-dependent threshold, after-spike currents, adapting threshold)
_GLIF_VARIANTS: dict[str, tuple[str, bool, bool, bool]] = {
    "glif_lif_psc": ("glif_psc", False, False, False),
    "glif_lif_r_psc": ("glif_psc", True, False, False),
    "glif_lif_asc_psc": ("glif_psc", False, True, False),
    "glif_lif_r_asc_psc": ("glif_psc", True, True, False),
    "glif_lif_r_asc_a_psc": ("glif_psc", True, True, True),
    "glif_lif_psc_bix": ("glif_psc_bix", False, False, False),
    "glif_lif_r_psc_bix": ("glif_psc_bix", True, False, False),
    "glif_lif_asc_psc_bix": ("glif_psc_bix", False, True, False),
    "glif_lif_r_asc_psc_bix": ("glif_psc_bix", True, True, False),
}


@dataclass
class NestModel:
    """A NEST model name plus the type-level parameter dict to create it with."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


def split_template(template: str | None, *, where: str) -> tuple[str, str]:
    """'nest:iaf_psc_alpha' -> ('nest', 'iaf_psc_alpha')."""
    if not template or not isinstance(template, str) or ":" not in template:
        raise EngineError(f"model_template {template!r} is not of the form 'nest:<model>'", key=where,
                          fix="set model_template to e.g. nest:iaf_psc_alpha in the node types CSV")
    directive, name = template.split(":", 1)
    return directive.strip(), name.strip()


def is_allen_glif(template: str | None, dynamics: dict[str, Any]) -> bool:
    return bool(template) and str(template).startswith("nest:glif") and dynamics.get("type") == "GLIF"


def convert_allen_glif(model: str, config: dict[str, Any], *, where: str = "dynamics_params") -> NestModel:
    """Allen GLIF JSON (SI units) -> NEST glif_psc parameters, exactly as BMTK's converter_builtin."""
    if model not in _GLIF_VARIANTS:
        raise EngineError(f"no NEST conversion for Allen GLIF model '{model}'", key=where,
                          fix=f"use one of: {', '.join('nest:' + m for m in _GLIF_VARIANTS)}")
    nest_model, spike_thr, asc, adapting = _GLIF_VARIANTS[model]
    try:
        coeffs = config["coeffs"]
        el_ref = config["El_reference"]
        p: dict[str, Any] = {
            "V_m": config["El"] * 1.0e03 + el_ref * 1.0e03,
            "V_th": coeffs["th_inf"] * config["th_inf"] * 1.0e03 + el_ref * 1.0e03,
            "g": coeffs["G"] / config["R_input"] * 1.0e09,
            "E_L": config["El"] * 1.0e03 + el_ref * 1.0e03,
            "C_m": coeffs["C"] * config["C"] * 1.0e12,
            "t_ref": config["spike_cut_length"] * config["dt"] * 1.0e03,
        }
        if spike_thr:
            thr = config["threshold_dynamics_method"]["params"]
            reset = config["voltage_reset_method"]["params"]
            p["th_spike_add"] = thr["a_spike"] * 1.0e03
            p["th_spike_decay"] = thr["b_spike"] * 1.0e-03
            if adapting:
                p["th_voltage_index"] = thr["a_voltage"] * coeffs["a"] * 1.0e-03
                p["th_voltage_decay"] = thr["b_voltage"] * coeffs["b"] * 1.0e-03
            p["voltage_reset_fraction"] = reset["a"]
            p["voltage_reset_add"] = reset["b"] * 1.0e03
        else:
            p["V_reset"] = el_ref * 1.0e03
        if asc:
            p["asc_init"] = np.array(config["init_AScurrents"]) * 1.0e12
            p["asc_decay"] = 1.0 / np.array(config["asc_tau_array"]) * 1.0e-03
            p["asc_amps"] = np.array(config["asc_amp_array"]) * np.array(coeffs["asc_amp_array"]) * 1.0e12
        if nest_model == "glif_psc":
            p["tau_syn"] = np.array(GLIF_TAU_SYN)
        else:
            p["tau_rise"] = np.array(GLIF_BIX_TAU_RISE)
            p["tau_decay"] = np.array(GLIF_BIX_TAU_DECAY)
        if spike_thr and asc:
            p["asc_r"] = (1.0, 1.0)
        p["spike_dependent_threshold"] = spike_thr
        p["after_spike_currents"] = asc
        p["adapting_threshold"] = adapting
    except (KeyError, TypeError) as exc:
        raise EngineError(f"Allen GLIF parameters lack {exc}", key=where,
                          fix="use the *_glif_*.json file from the Allen Cell Types database unchanged") from exc
    return NestModel(nest_model, p)


def resolve_model(batch: CellBatch) -> NestModel:
    """The NEST model and type-level parameters for a (non-virtual) cell batch."""
    where = f"{batch.population} node_type_id {batch.node_type_id}: model_template"
    if batch.model_type not in POINT_MODEL_TYPES:
        raise EngineError(f"the NEST engine runs point neurons, not '{batch.model_type}' cells "
                          f"({batch.population}, node_type_id {batch.node_type_id})", key="model_type",
                          fix="run this network with target_simulator NEURON, or use point_neuron node types")
    if batch.model_processing and str(batch.model_processing).lower() not in ("none", "nan"):
        raise EngineError(f"model_processing '{batch.model_processing}' is not supported by the NEST engine",
                          key=f"{batch.population} node_type_id {batch.node_type_id}: model_processing",
                          fix="remove model_processing; put per-cell parameters in the h5 dynamics_params group")
    directive, name = split_template(batch.model_template, where=where)
    if directive != "nest":
        raise EngineError(f"model_template '{batch.model_template}' is not a NEST model", key=where,
                          fix="use nest:<model> (e.g. nest:iaf_psc_alpha) for point neurons")
    dynamics = dict(batch.dynamics or {})
    if is_allen_glif(batch.model_template, dynamics):
        return convert_allen_glif(name, dynamics, where=f"{batch.population} node_type_id "
                                                       f"{batch.node_type_id}: dynamics_params")
    return NestModel(name, dynamics)
