"""Interventions on plain Hugging Face models through forward hooks (no TransformerLens conversion)."""

from causalguard.adapters.hf.hooks import SteeringHooks, install_steering_hooks, steer
from causalguard.adapters.hf.interventions import FeatureEdit, SaeIntervention, Scope
from causalguard.adapters.hf.sae import LoadedSae, load_sae, resolve_layer

__all__ = [
    "FeatureEdit",
    "LoadedSae",
    "SaeIntervention",
    "Scope",
    "SteeringHooks",
    "install_steering_hooks",
    "load_sae",
    "resolve_layer",
    "steer",
]
