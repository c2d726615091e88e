"""Turn examples into model inputs, once per split (the data is static, so there is no per-batch collation).

Two input kinds: token ids of our own tiny vocabularies with a BOS token in front (models trained from
scratch), and text written as space-separated digits for a pretrained model's own tokenizer.
"""
import torch


def bos_ids(x, bos):
    """[n, L] symbols -> {'input_ids': [n, L+1]} with the BOS token prepended."""
    x = torch.as_tensor(x, dtype=torch.long)
    return {"input_ids": torch.cat([torch.full((len(x), 1), bos, dtype=torch.long), x], dim=1)}


def digit_text(x):
    """[n, L] symbols -> ['0 1 1 0', ...]: the strings a pretrained tokenizer reads."""
    return [" ".join(map(str, row)) for row in torch.as_tensor(x).tolist()]


def tokenized(x, tokenizer, max_length=None):
    """[n, L] symbols -> {'input_ids', 'attention_mask'} from the model's tokenizer, right-padded.

    max_length None: every string whole, padded to the longest. max_length = m: what the original's
    collator did (m = L + 2 there): each string cut to its first m tokens and padded to exactly m.
    Tokenizers that give each space its own token turn L digits into 2L - 1 tokens (plus a BOS for
    some), so the cut keeps only about the first half of the digits.
    """
    tokenizer.padding_side = "right"
    if max_length is None:
        enc = tokenizer(digit_text(x), return_tensors="pt", padding=True)
    else:
        enc = tokenizer(digit_text(x), return_tensors="pt", padding="max_length", truncation=True,
                        max_length=max_length)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
