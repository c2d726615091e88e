# The seed README's fine-tuning sweep as the original code really ran it (GPU): 45 runs, 15 distinct
# models, since finetune_layers changes nothing. The paper's fine-tuning numbers measure this:
# * head_only = True: only the new one-logit head trains. The original unfroze the top N layers, but its
#   gradient checkpointing (transformers' reentrant default) behind frozen embeddings gave them no
#   gradient; finetune_layers = 8, 4, 2 is recorded, not used.
# * original_truncation = True: every input cut to L + 2 tokens. The Qwen tokenizer gives each space its
#   own token, so the model read the first 51 of 100 digits at L = 100 (11 of 20 at L = 20).
# * model_dtype = 'bfloat16': the pretrained backbone loaded in bf16 (the original's torch_dtype); the
#   head float32. With head_only nothing else trains, so this changes only the backbone's rounding.
# * weight_decay 1e-5, lr 5e-3 -> 1e-3 cosine, batch 20, 1000 epochs, bf16 autocast on the GPU.
# * evaluations every 100 epochs (the original: before epochs 1, 101, ...), plus one after the last.
# The original read Qwen2-1.5B's tokenizer; the one saved with Qwen3-1.7B splits digits and spaces the
# same way. Put Qwen3-1.7B (model and tokenizer) saved with save_pretrained at pretrained_path.
# python sweep.py --base conf/target_functions_finetune_as_run.py --vary target_func=func18,func3,func22 \
#     --vary sequence_length=100,50,30,25,20 --vary finetune_layers=8,4,2 --yes
task = 'target_functions'
model = 'qwen3_finetune'
pretrained_path = 'pretrained/Qwen3-1.7B'
finetune_layers = 8
head_only = True
original_truncation = True
model_dtype = 'bfloat16'
target_func = 'func18'
sequence_length = 100
train_set_size = 200
test_set_size = 10000
batch_size = 20
n_epochs = 1000
lr = 5e-3
eta_min = 1e-3
weight_decay = 1e-5
eval_every = 100
eval_batch_size = 256
