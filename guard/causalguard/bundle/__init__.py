"""Per-model bundles: the causal value graph, its effects and evaluations, versioned on disk."""

from causalguard.bundle.format import BUNDLE_SCHEMA, Bundle, BundleMismatchError, load_bundle, save_bundle

__all__ = ["BUNDLE_SCHEMA", "Bundle", "BundleMismatchError", "load_bundle", "save_bundle"]
