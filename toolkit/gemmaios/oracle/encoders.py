"""The fp32 reference for encoder prompts (the image and audio oracles): HF's
Gemma4ForConditionalGeneration loaded once, greedy decoding with the encoder's tensors on the first
step and top-k recorded at every step, and the oracle record of the prompts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .records import Oracle, OraclePrompt, TopK


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """torch on one thread for the block: the tiny models decode faster so on a shared machine (see
    oracle.reference)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class EncoderReference:
    """A multimodal checkpoint's HF model in fp32, its tokenizer and EOS ids."""

    def __init__(self, checkpoint_dir: Path) -> None:
        import torch
        from transformers import AutoTokenizer, Gemma4ForConditionalGeneration

        from ..checkpoint import load_checkpoint

        self.checkpoint = load_checkpoint(Path(checkpoint_dir), model_id=str(checkpoint_dir))
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
        self.model = Gemma4ForConditionalGeneration.from_pretrained(str(checkpoint_dir), dtype=torch.float32).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos_token_ids: list[int] = sorted({eos} if isinstance(eos, int) else set(eos or []))

    def chat_text(self, question: str) -> str:
        """The user turn holding `question`, rendered as the app renders it (the project's framing when
        the tokenizer has no chat template)."""
        from ..tinycorpus import chat_prompt

        tok = self.tokenizer
        if getattr(tok, "chat_template", None) is None:
            return chat_prompt(question)
        return tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                       add_generation_prompt=True)

    def greedy(self, inputs: dict[str, Any], max_new_tokens: int, top_k: int) -> tuple[list[int], list[TopK]]:
        """Greedy decode of exactly `max_new_tokens` tokens (no EOS stop) with the KV cache, the first
        step fed `inputs` (input_ids and the encoder's tensors), recording each step's top-k."""
        import torch

        generated: list[int] = []
        steps: list[TopK] = []
        with torch.no_grad():
            result = self.model(**inputs, use_cache=True)
            for step in range(max_new_tokens):
                top = torch.topk(result.logits[0, -1].float(), top_k)
                steps.append(TopK([int(i) for i in top.indices], [float(v) for v in top.values]))
                generated.append(int(top.indices[0]))
                if step + 1 < max_new_tokens:
                    result = self.model(input_ids=torch.tensor([generated[-1:]]),
                                        past_key_values=result.past_key_values, use_cache=True)
        return generated, steps

    def record(self, path: Path, prompt_id: str, text: str, ids: list[int], spliced_ids: list[int],
               num_soft_tokens: int, generated: list[int], steps: list[TopK], tensors: dict[str, np.ndarray],
               metadata: dict[str, str]) -> OraclePrompt:
        """Save one prompt's tensors to `path` (the encoder's own `tensors` and `metadata`, with the ids
        every encoder oracle keeps: input_ids, spliced_input_ids, num_soft_tokens, and the prompt text)
        and return its OraclePrompt."""
        from safetensors.numpy import save_file

        save_file({**tensors, "input_ids": np.asarray(ids, np.int32), "spliced_input_ids": np.asarray(spliced_ids, np.int32),
                   "num_soft_tokens": np.asarray([num_soft_tokens], np.int32)},
                  str(path), metadata={**metadata, "prompt": text})
        first_eos = next((i for i, t in enumerate(generated) if t in self.eos_token_ids), None)
        return OraclePrompt(prompt_id, text, ids, generated, steps, first_eos)

    def oracle(self, prompts: list[OraclePrompt], prompt_set: dict, max_new_tokens: int, top_k: int) -> Oracle:
        from ..files import sha256_file
        from .reference import tool_versions

        ckpt = self.checkpoint
        return Oracle(
            model={"id": ckpt.model_id, "revision": ckpt.revision, "fingerprint": ckpt.fingerprint(),
                   "model_type": ckpt.config.get("model_type")},
            tokenizer_sha256=sha256_file(ckpt.tokenizer_path), chat_template=True, prompt_set=prompt_set,
            max_new_tokens=max_new_tokens, top_k=top_k, eos_token_ids=self.eos_token_ids, prompts=prompts,
            tools=tool_versions())
