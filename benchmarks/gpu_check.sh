#!/usr/bin/env bash
# ONE prepared check for a GPU machine (never used by tests): plan + run a 0.5B-class full SFT for a few
# dozen steps (optimizer steps of 16 x 16 packed 1024-token sequences: ~16; micro-steps: ~250), then print peak memory and tokens/s against the plan's estimate.
#
#   bash benchmarks/gpu_check.sh [WORK_DIR]        (PYTHON=python3 by default; about 3-5 minutes on one H200)
#
# Nothing is downloaded: the model is a Qwen2.5-0.5B-shaped Llama (hidden 896, 24 layers, 14 heads / 2 KV
# heads, MLP 4864, vocab 151936, tied embeddings: ~494M parameters) with random weights, the tokenizer
# and data are generated (executor/tiny.py), rows are long (reverse/copy tasks of ~100 words) and packed
# into 1024-token sequences. Needs torch with CUDA, transformers >= 5, accelerate, pyyaml, rich
# (the script says which are missing; carry those as wheels). The plan pins 1 x h200, strategy single.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
W=${1:-/tmp/sftplan-gpu-check}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
rm -rf "$W" && mkdir -p "$W"

$PY - <<'EOF'
import importlib, sys
missing = [m for m in ("torch", "transformers", "accelerate", "yaml", "rich", "tokenizers", "safetensors")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages: {', '.join(missing)}")
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.cuda.is_available()}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
sys.exit(0 if torch.cuda.is_available() else "gpu_check: no CUDA device")
EOF

$PY - "$W" <<'EOF'
import json, random, sys, time
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from executor.tiny import WORDS, build_tokenizer, make_rows

w = Path(sys.argv[1]); t0 = time.time()
rng = random.Random(0)
def row():
    words = [rng.choice(WORDS) for _ in range(rng.randint(40, 120))]
    if rng.random() < 0.5:
        return {"prompt": "reverse: " + " ".join(words), "response": " ".join(reversed(words))}
    return {"prompt": "copy: " + " ".join(words), "response": " ".join(words)}
(w / "train.jsonl").write_text("".join(json.dumps(row()) + "\n" for _ in range(24000)))  # ~4M tokens: ~16 optimizer steps of 256 x 1024
(w / "golden.jsonl").write_text("".join(json.dumps({"prompt": p, "expected": a}) + "\n" for p, a in make_rows(16, 7)))
tok = build_tokenizer([f"user\n{p}\nassistant\n{a}\nsystem\n" for p, a in make_rows(2000, 2)] +
                      ["reverse: copy: " + " ".join(WORDS)] * 50)
cfg = LlamaConfig(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
torch.manual_seed(0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg)
model.generation_config.eos_token_id = tok.eos_token_id
model.generation_config.pad_token_id = tok.pad_token_id
print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, built in {time.time() - t0:.0f} s")
model.save_pretrained(w / "model"); tok.save_pretrained(w / "model")
EOF

$PY -m advisor plan --model "$W/model" --dataset "$W/train.jsonl" --golden "$W/golden.jsonl" --method full-sft \
    --gpu h200 --num-gpus 1 --strategy single --epochs 1 --max-seq-len 1024 --packing --learning-rate 1e-4 \
    -o "$W/plan.yaml" > "$W/plan.txt"
$PY -m advisor approve "$W/plan.yaml" --by gpu-check
$PY - "$W/plan.yaml" <<'EOF'
import sys
from advisor.planfile import read_plan
p = read_plan(sys.argv[1]); r, e = p.recommended, p.estimate
print(f"plan: {r.num_gpus} x {r.gpu} {r.strategy}, micro-batch {r.micro_batch_size} x accum {r.grad_accum}, "
      f"activation checkpointing {r.activation_checkpointing}; estimate {e.memory_per_gpu_gib:.1f} GiB/GPU, "
      f"{e.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, {e.steps_per_epoch} steps/epoch")
EOF

timeout 420 $PY -m advisor run "$W/plan.yaml" --out "$W/run" > "$W/run.txt" 2>&1 || { tail -40 "$W/run.txt"; exit 1; }
grep -E "golden|finished|stopped" "$W/run.txt" || true
cat "$W/run/report.md"
$PY - "$W/run" <<'EOF'
import json, statistics, sys
from pathlib import Path
rows = [json.loads(l) for l in (Path(sys.argv[1]) / "metrics.jsonl").read_text().splitlines()]
steady = rows[3:] or rows
print(f"measured over {len(rows)} steps: median {statistics.median(r['tokens_per_s_per_gpu'] for r in steady):,.0f} "
      f"tokens/s/GPU, median step {statistics.median(r['step_time_s'] for r in steady):.3f} s, peak memory "
      f"{max(r['peak_memory_bytes'] for r in rows) / 2**30:.2f} GiB ({rows[-1]['peak_memory_kind']})")
EOF
if [ -n "${OUT:-}" ]; then cp "$W/run/report.md" "$W/run/report.json" "$W/run/metrics.jsonl" "$W/plan.yaml" "$OUT/" ; fi
