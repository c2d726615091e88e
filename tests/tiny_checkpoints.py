"""Tiny pretrained checkpoints that tests write themselves with save_pretrained (nothing is downloaded):
a Qwen3 (tied, float32) and a Llama (untied, bfloat16, deepseek-like) saved as causal LMs the way real
checkpoints are, plus a WordLevel digit tokenizer without a pad token in the Qwen3 folder."""
import torch

HIDDEN, LAYERS, HEADS, KV, HEAD_DIM, VOCAB = 32, 3, 4, 2, 8, 13


def write(root):
    """Save both checkpoints under root; {family: (folder, float32 backbone state_dict)}."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen3Config

    shape = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=48,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV,
        head_dim=HEAD_DIM,
        max_position_embeddings=64,
    )
    saved = {}
    torch.manual_seed(1)
    for name, config in [
        ("qwen3", Qwen3Config(tie_word_embeddings=True, **shape)),
        ("llama", LlamaConfig(tie_word_embeddings=False, rope_parameters={"rope_type": "linear", "rope_theta": 1e5, "factor": 4.0}, **shape)),
    ]:
        lm = AutoModelForCausalLM.from_config(config)
        if name == "llama":
            lm = lm.to(torch.bfloat16)  # as real checkpoints often are; loading must still give float32
        lm.save_pretrained(root / name)
        saved[name] = (root / name, {k: v.float() for k, v in lm.model.state_dict().items()})

    vocab = {"[UNK]": 0, "[EOS]": 1, **{str(d): d + 2 for d in range(10)}}
    tok = Tokenizer(tok_models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    # spaces separate words (and are dropped), digits are single tokens: '0 1 1' -> [2, 3, 3]
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="[EOS]").save_pretrained(root / "qwen3")
    return saved
