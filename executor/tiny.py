"""The embedded default: a tiny Llama (random weights, seeded), a locally trained byte-level BPE
tokenizer with a ChatML chat template, a synthetic instruction dataset and a golden set.

Everything is generated; nothing is downloaded. ``make_tiny(out_dir)`` writes::

    out_dir/model/          config.json, model.safetensors, generation_config.json, tokenizer files
    out_dir/train.jsonl     instruction rows in mixed formats (messages, prompt/response, alpaca)
    out_dir/golden.jsonl    prompt + expected

The tasks are small and learnable (adding digits, reversing and repeating words, a fixed word map)
with prompts and answers of varied length, so loss falls within a few epochs on a CPU and packing
has something to pack. torch/transformers are imported only inside the functions.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "milk", "rain"]
OPPOSITE = {"hot": "cold", "up": "down", "big": "small", "day": "night", "yes": "no", "fast": "slow",
            "old": "new", "left": "right"}
SPECIAL = {"bos": "<|bos|>", "eos": "<|im_end|>", "pad": "<|pad|>", "start": "<|im_start|>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MODEL_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=512)


def _task(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randrange(10), rng.randrange(10)
        return f"add {a} {b}", str(a + b)
    if kind == 1:
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
        return "reverse: " + " ".join(words), " ".join(reversed(words))
    if kind == 2:
        word, n = rng.choice(WORDS), rng.randint(1, 12)
        return f"repeat {n}: {word}", " ".join([word] * n)
    word = rng.choice(sorted(OPPOSITE))
    return f"opposite of {word}", OPPOSITE[word]


def _row(prompt: str, answer: str, i: int) -> dict:
    """Rotate through the supported formats so every one of them is exercised."""
    if i % 3 == 0:
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}
    if i % 3 == 1:
        return {"prompt": prompt, "response": answer}
    instr, _, rest = prompt.partition(": ")
    return {"instruction": instr, "input": rest, "output": answer} if rest else {"instruction": prompt, "output": answer}


def make_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [_task(rng) for _ in range(n)]


def write_data(out_dir: Path, *, n_train: int, n_golden: int, seed: int) -> tuple[Path, Path]:
    train = out_dir / "train.jsonl"
    golden = out_dir / "golden.jsonl"
    train.write_text("".join(json.dumps(_row(p, a, i)) + "\n" for i, (p, a) in enumerate(make_rows(n_train, seed))))
    golden.write_text("".join(json.dumps({"prompt": p, "expected": a}) + "\n"
                              for p, a in make_rows(n_golden, seed + 1)))
    return train, golden


def build_tokenizer(texts: list[str], vocab_size: int = 320):
    """Byte-level BPE trained on ``texts``, wrapped as a PreTrainedTokenizerFast with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL["bos"], eos_token=SPECIAL["eos"],
                                   pad_token=SPECIAL["pad"], additional_special_tokens=[SPECIAL["start"]])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, tokenizer, seed: int):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, **MODEL_SHAPE)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model


def make_tiny(out_dir: str | Path, *, n_train: int = 200, n_golden: int = 16, seed: int = 0) -> dict[str, Path]:
    """Write the tiny model, tokenizer, train.jsonl and golden.jsonl; returns their paths."""
    out = Path(out_dir)
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    train, golden = write_data(out, n_train=n_train, n_golden=n_golden, seed=seed)
    corpus = [f"user\n{p}\nassistant\n{a}\nsystem\n" for p, a in make_rows(2000, seed + 2)]
    tokenizer = build_tokenizer(corpus)
    model = build_model(len(tokenizer), tokenizer, seed)
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    return {"model": model_dir, "train": train, "golden": golden}


if __name__ == "__main__":  # python -m executor.tiny OUT_DIR
    import sys

    print(json.dumps({k: str(v) for k, v in make_tiny(sys.argv[1] if len(sys.argv) > 1 else "tiny").items()}))
