"""reasonry: generate, compare, ensemble, check, steer and debate LLM reasoning, and turn it into fine-tuning data."""

from reasonry.config import ModelSpec, SamplingParams, parse_model_spec
from reasonry.store import Store
from reasonry.tasks.generate import GenerateConfig, generate

__all__ = ["GenerateConfig", "ModelSpec", "SamplingParams", "Store", "generate", "parse_model_spec"]
__version__ = "0.1.0"
