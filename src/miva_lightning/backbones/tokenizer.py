"""Offline text side of the tiny backbone: a word-level CLIP tokenizer and a small CLIP text encoder.

No tokenizer files can be downloaded here, so the tokenizer is built in code. CLIP's tokenizer is a
byte-pair encoder; giving it, for each known word, the chain of merges that rebuilds the word from its
letters makes every known word a single token, while unknown words still fall back to letters.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
PUNCTUATION = ".,!?'-:;"


def caption_words(captions: Iterable[str]) -> list[str]:
    """Lower-cased words of the captions, in first-seen order (the tokenizer's own word split)."""
    seen: dict[str, None] = {}
    for caption in captions:
        for word in re.findall(r"[a-z0-9]+", caption.lower()):
            seen.setdefault(word, None)
    return list(seen)


def _merge_chain(word: str) -> list[tuple[str, str]]:
    """Merges that rebuild `word` left to right: "p","a","n</w>" -> "pa","n</w>" -> "pan</w>"."""
    pieces, chain = list(word[:-1]) + [word[-1] + "</w>"], []
    while len(pieces) > 1:
        chain.append((pieces[0], pieces[1]))
        pieces = [pieces[0] + pieces[1]] + pieces[2:]
    return chain


def _make_tokenizer(chains: list[list[tuple[str, str]]]) -> CLIPTokenizer:
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    for char in LETTERS + PUNCTUATION:
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for chain in chains:
        for pair in chain:
            if pair not in merges:
                merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges)


def build_word_tokenizer(words: Sequence[str], max_length: int = 16) -> CLIPTokenizer:
    """A CLIPTokenizer in which each word of `words` is one token (ids are stable for a given list).

    BPE applies merges by rank, so a short word's merges can pre-empt a longer word's chain ("an</w>"
    inside "pan"). Longer words go first, and any word still split is moved to the front and retried.
    """
    for word in words:
        if not re.fullmatch(r"[a-z0-9]+", word):
            raise ValueError(f"tokenizer words must be lower-case letters/digits, got {word!r}")
    order = sorted(dict.fromkeys(words), key=lambda w: (-len(w), words.index(w)))
    for _ in range(len(order) + 1):
        tokenizer = _make_tokenizer([_merge_chain(w) for w in order])
        split = [w for w in order if len(tokenizer.tokenize(w)) != 1]
        if not split:
            tokenizer.model_max_length = max_length
            return tokenizer
        order = split + [w for w in order if w not in split]
    raise ValueError(f"could not make single tokens of {split}; remove conflicting words from the vocabulary")


def build_text_encoder(
    vocab_size: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, max_length: int = 16
) -> CLIPTextModel:
    """A small randomly initialised CLIP text transformer (trained together with the tiny UNet)."""
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def encode_prompts(backbone, prompts: Sequence[str]) -> torch.Tensor:
    """Prompts -> text embeddings `b L D` (the last hidden state, as diffusers pipelines use it)."""
    if isinstance(prompts, str):
        raise TypeError("encode_prompts takes a list of prompts, not a single string")
    if getattr(backbone, "prompt_encoder", None) is not None:  # e.g. Wan: masked UMT5 with zeroed padding
        return backbone.prompt_encoder(list(prompts))
    if backbone.tokenizer is None or backbone.text_encoder is None:
        raise ValueError(f"backbone {backbone.name!r} has no text encoder; pass prompt embeddings directly")
    tokens = backbone.tokenizer(
        list(prompts),
        padding="max_length",
        max_length=backbone.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = next(backbone.text_encoder.parameters()).device
    return backbone.text_encoder(tokens.input_ids.to(device)).last_hidden_state
