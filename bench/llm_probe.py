"""Raw llama.cpp speed on one prompt, measured with the runtime alone (no paper-rag code), as JSON.

    python bench/llm_probe.py --runtime llama-cpp-python|xllamacpp --model M.gguf --prompt-file P.txt
        [--threads N] [--n-batch N] [--n-ubatch N] [--flash-attn] [--gen 32]

Runs under any Python that has the runtime installed (bench/speed.py starts it in a subprocess,
so environment variables such as OMP_WAIT_POLICY apply from process start). The prompt file holds
the chat-formatted prompt text; prompt processing is timed on a fresh context, generation is
greedy. Prints {"runtime", "prompt_tokens", "pp_tok_s", "tg_tok_s", "load_s"}.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def llama_cpp_python(args: argparse.Namespace, prompt: str) -> dict:
    from llama_cpp import Llama

    started = time.perf_counter()
    llama = Llama(
        model_path=args.model,
        n_ctx=4096,
        n_threads=args.threads,
        n_batch=args.n_batch,
        n_ubatch=args.n_ubatch,
        flash_attn=args.flash_attn,
        verbose=False,
    )
    load_s = time.perf_counter() - started
    tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
    llama.eval(tokens[:8])  # warm-up: first-touch of weights is not prompt speed
    llama.reset()
    started = time.perf_counter()
    llama.eval(tokens)
    pp_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.gen):
        token = llama.sample(temp=0.0)
        llama.eval([token])
    tg_s = time.perf_counter() - started
    return {"prompt_tokens": len(tokens), "pp_tok_s": len(tokens) / pp_s, "tg_tok_s": args.gen / tg_s, "load_s": load_s}


def xllamacpp(args: argparse.Namespace, prompt: str) -> dict:
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    params.n_ctx = 4096
    params.n_batch = args.n_batch
    params.n_ubatch = args.n_ubatch
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.flash_attn_type = (
        xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if args.flash_attn
        else (xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    )
    started = time.perf_counter()
    server = xlc.Server(params)
    load_s = time.perf_counter() - started
    server.handle_completions({"prompt": "warm up", "n_predict": 1, "cache_prompt": False})
    body = {"prompt": prompt, "n_predict": args.gen, "temperature": 0, "cache_prompt": False, "ignore_eos": True}
    timings = server.handle_completions(body)["timings"]
    return {
        "prompt_tokens": timings["prompt_n"],
        "pp_tok_s": timings["prompt_per_second"],
        "tg_tok_s": timings["predicted_per_second"],
        "load_s": load_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=["llama-cpp-python", "xllamacpp"], default="llama-cpp-python")
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt-file", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--n-ubatch", type=int, default=512)
    parser.add_argument("--flash-attn", action="store_true")
    parser.add_argument("--gen", type=int, default=16)
    args = parser.parse_args()
    with open(args.prompt_file, encoding="utf-8") as handle:
        prompt = handle.read()
    probe = llama_cpp_python if args.runtime == "llama-cpp-python" else xllamacpp
    result = {"runtime": args.runtime, **probe(args, prompt)}
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
