# CPU scale of the seed README's fine-tuning sweep: Qwen3-0.6B instead of 1.7B, L = 20 and 30, 2,000 test
# strings, 20 epochs. The weights load from a local folder (no download): save Qwen3-0.6B with
# save_pretrained (model and tokenizer) at pretrained_path. finetune_layers = N trains the head plus the
# top N decoder layers (0: the head only; -1: everything); lora_r > 0 trains LoRA adapters instead.
# Not run on the development machine (no weights there); every step runs the whole 0.6B forward, so
# expect seconds per step on a laptop CPU. tests/test_finetune_run.py drives the same path on a tiny model.
# python sweep.py --base conf/target_functions_finetune_cpu.py --vary target_func=func18,func3,func22 \
#     --vary sequence_length=30,20 --vary finetune_layers=2,0 --yes
task = 'target_functions'
model = 'qwen3_finetune'
pretrained_path = 'pretrained/Qwen3-0.6B'
finetune_layers = 2
target_func = 'func18'
sequence_length = 20
train_set_size = 200
test_set_size = 2000
batch_size = 20
n_epochs = 20
lr = 5e-3
eta_min = 1e-3
weight_decay = 0.01
eval_every = 5
eval_batch_size = 256
