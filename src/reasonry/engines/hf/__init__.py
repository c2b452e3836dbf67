"""Engine `hf`: scheduler, KV cache, model runner and sampling of the one decode loop (see engine.HFEngine)."""

from reasonry.engines.hf.engine import HFEngine

__all__ = ["HFEngine"]
