"""The fp32 reference oracle, and the gates that judge device runs against it.

`run_oracle` runs the Hugging Face `transformers` Gemma 4 text decoder in fp32 on a prompt
set, greedy, a fixed number of new tokens per prompt, and records every step's top-k
logits. `score_against_oracle` then says how many device generations match it exactly, where
each divergence starts, and whether it started at a near-tie (the oracle's own top-1/top-2
margin below a threshold: a quantization-class flip) or at a clear decision (a bug).
`compare_runs` / `compare_trials` judge run-vs-run determinism the same way.

The oracle decodes the full N tokens without stopping at EOS, because the device bench runs
a fixed N too; a device run that stops early at an EOS the oracle also produced still counts
as exact.

Layout, one concern per module (every public name is re-exported here, so
`gemmaios.oracle.X` keeps working):
- `prompts`: Prompt sets: the built-in set and user YAML files (`prompts: [{id, text}]`), validated strictly.
- `records`: The oracle file (oracle/oracle.json, schema gemmaios.oracle/1): per-prompt tokens and top-k
  logits, written and read back strictly.
- `reference`: The fp32 reference: the Hugging Face Gemma 4 text decoder run greedy (`run_oracle`) or
  teacher-forced, and the torch device check.
- `encoders`: The fp32 reference for encoder prompts (the image and audio oracles): HF's multimodal model,
  greedy with the encoder's tensors on the first step, and the oracle record.
- `scoring`: Device generations against the oracle: exact matches, where each divergence starts, and whether
  it started at a near-tie.
- `determinism`: Run-vs-run and trial-vs-trial determinism, judged token by token the same way as the oracle
  score.
- `step`: The `oracle` pipeline step: runs the reference on the build's checkpoint and records
  oracle/oracle.json.
"""

from .determinism import DeterminismScore, PairScore, compare_runs, compare_trials
from .encoders import EncoderReference
from .prompts import BUILTIN_PROMPTS, Prompt, PromptSet, PromptSetError, load_prompt_set
from .records import (
    DEFAULT_TOKENS,
    DEFAULT_TOP_K,
    ORACLE_FILE,
    ORACLE_SCHEMA,
    Oracle,
    OracleError,
    OraclePrompt,
    TopK,
    load_oracle,
)
from .reference import (
    SINGLE_THREAD_PARAMS,
    ForcedStep,
    Progress,
    ReferenceModel,
    TeacherForced,
    check_torch_device,
    encode_prompt,
    run_oracle,
    teacher_forced,
)
from .scoring import (
    DEFAULT_NEAR_TIE_MARGIN,
    DIVERGED,
    EXACT,
    NEAR_TIE,
    NO_ORACLE,
    PROMPT_MISMATCH,
    SHORT,
    Generation,
    GenerationsLike,
    OracleScore,
    PromptScore,
    as_generations,
    explain_divergences,
    first_divergence,
    score_against_oracle,
)
from .step import OracleStep

__all__ = [
    "BUILTIN_PROMPTS",
    "DEFAULT_NEAR_TIE_MARGIN",
    "DEFAULT_TOKENS",
    "DEFAULT_TOP_K",
    "DIVERGED",
    "DeterminismScore",
    "EncoderReference",
    "EXACT",
    "ForcedStep",
    "Generation",
    "GenerationsLike",
    "NEAR_TIE",
    "NO_ORACLE",
    "ORACLE_FILE",
    "ORACLE_SCHEMA",
    "Oracle",
    "OracleError",
    "OraclePrompt",
    "OracleScore",
    "OracleStep",
    "PROMPT_MISMATCH",
    "PairScore",
    "Progress",
    "Prompt",
    "PromptScore",
    "PromptSet",
    "PromptSetError",
    "ReferenceModel",
    "SHORT",
    "SINGLE_THREAD_PARAMS",
    "TeacherForced",
    "TopK",
    "as_generations",
    "check_torch_device",
    "compare_runs",
    "compare_trials",
    "encode_prompt",
    "explain_divergences",
    "first_divergence",
    "load_oracle",
    "load_prompt_set",
    "run_oracle",
    "score_against_oracle",
    "teacher_forced",
]
