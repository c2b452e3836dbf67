"""reasonry: generate, compare, ensemble, check, steer and debate LLM reasoning, and turn it into fine-tuning data."""

# The submodules named like API functions are imported first: importing a submodule later would set the
# package attribute back to the module, hiding the function.
import reasonry.debate
import reasonry.export
import reasonry.train  # noqa: F401
from reasonry.api import (
    Run,
    check,
    debate,
    decontaminate,
    dedup,
    ensemble,
    export,
    generate,
    steer,
    train,
    translate,
    usage,
)
from reasonry.config import ModelSpec, SamplingParams, parse_model_spec
from reasonry.store import Store
from reasonry.tasks.generate import GenerateConfig

__all__ = ["GenerateConfig", "ModelSpec", "Run", "SamplingParams", "Store", "check", "debate", "decontaminate", "dedup",
           "ensemble", "export", "generate", "parse_model_spec", "steer", "train", "translate", "usage"]
__version__ = "0.1.0"
