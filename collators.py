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


def tokenized(x, tokenizer):
    """[n, L] symbols -> {'input_ids', 'attention_mask'} from the model's tokenizer, right-padded."""
    tokenizer.padding_side = "right"
    enc = tokenizer(digit_text(x), return_tensors="pt", padding=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
