#!/usr/bin/env python3
# Builds expected token ids with Hugging Face `tokenizers` (pip install tokenizers gguf) and
# writes tests/tokenizer/data/expected_ids.json, which test_tokenizer.cpp checks. Not run by
# the tests. Usage: make_expected.py MODEL.gguf FIXTURE_DIR [TEXT_FILE]
#   MODEL.gguf   the default model (scripts/fetch_model.sh)
#   FIXTURE_DIR  output of `sharq_make_fixtures DIR` (tiny-llama3/, tiny-qwen2/ tokenizer.json)
#   TEXT_FILE    optional long text (scripts/fetch_text.sh): stored as a count + FNV-1a hash
#
# The default model ships as GGUF only, so its tokenizer.json is rebuilt from the GGUF's vocab
# and merges with SmolLM2's published pre-tokenizer (Digits(individual) + ByteLevel(regex)),
# i.e. exactly what HF's SmolLM2 tokenizer.json declares.
import json, os, sys
from gguf import GGUFReader
from tokenizers import Tokenizer

TEXT = (
    "Hello world! It's a TEST: we'll see, they've done, I'M here.\n"
    "def f(x):\n    return x**2  # square\n\tindent\tand  double  spaces   end   \n\n\n"
    "Numbers: 3.14159, 1234567890, 1,000,000 and -42e-3; ½ ² ٣.\n"
    "Accents: café naïve résumé Zürich São Paulo; decomposed: cafe\u0301.\n"
    "CJK: 日本語のテキスト 中文测试 한국어 텍스트.\n"
    "Emoji: 👋🌍 🚀✨ 👨‍👩‍👧 done.\n"
    "Русский текст и العربية.\n"
    "Odd spaces: a\u0085\u0085b c\u00a0\u00a0d e\u3000f g\u200b\u200bh i\u001c\u001cj\r\n\r\n\v k\n"
    "<|im_start|>user\nHi there<|im_end|>\n<|endoftext|>trailing   "
)
# Qwen2's normalizer is NFC: its ids for TEXT equal those for TEXT_NFC.
TEXT_NFC = TEXT.replace("cafe\u0301", "caf\u00e9")


def field(r, key):
    return r.fields[key].contents()


def smollm_tokenizer_json(gguf_path):
    r = GGUFReader(gguf_path)
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = field(r, "tokenizer.ggml.merges")
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (3, 4)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": list(merges)},
    }


def fnv1a(ids):
    h = 0xcbf29ce484222325
    for b in ",".join(str(i) for i in ids).encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    gguf_path, fixture_dir = sys.argv[1], sys.argv[2]
    text_file = sys.argv[3] if len(sys.argv) > 3 else None
    here = os.path.dirname(os.path.abspath(__file__))
    out = {"text": TEXT, "text_nfc": TEXT_NFC, "cases": []}
    smol = Tokenizer.from_str(json.dumps(smollm_tokenizer_json(gguf_path)))
    tok = {"smollm2": smol}
    for name in ("tiny-llama3", "tiny-qwen2"):
        tok[name] = Tokenizer.from_file(os.path.join(fixture_dir, name, "tokenizer.json"))
    for name, t in tok.items():
        ids = t.encode(TEXT, add_special_tokens=False).ids
        back = TEXT_NFC if name == "tiny-qwen2" else TEXT
        assert t.decode(ids, skip_special_tokens=False) == back, name
        if name == "tiny-qwen2":
            assert t.encode(TEXT_NFC, add_special_tokens=False).ids == ids
        out["cases"].append({"tokenizer": name, "nfc": name == "tiny-qwen2", "ids": ids})
    if text_file:
        data = open(text_file, encoding="utf-8").read()
        ids = smol.encode(data, add_special_tokens=False).ids
        out["long_text"] = {"file": os.path.basename(text_file), "bytes": len(data.encode()),
                            "count": len(ids), "fnv1a": f"{fnv1a(ids):016x}"}
    path = os.path.join(here, "data", "expected_ids.json")
    with open(path, "w") as f:
        json.dump(out, f, ensure_ascii=False)
    print(path, [(c["tokenizer"], len(c["ids"])) for c in out["cases"]], out.get("long_text"))


if __name__ == "__main__":
    main()
