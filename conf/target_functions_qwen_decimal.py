# Seed README "Sweep - qwen3 1.7B (decimal)" at the paper's size (GPU): 10 runs.
# python sweep.py --base conf/target_functions_qwen_decimal.py --vary target_func=func19,func22 \
#     --vary sequence_length=100,50,30,25,20 --yes
# The same settings serve the seed README's "Example Sweep qwen3 1.7B experiments (binary)", the binary rows
# of the paper's headline table (reference/target_functions.md, at L = 100): full parity (func7), first-half
# parity (func1), patterns 10101010 / 00111111 (func20, func21), 3- and 10-parity (func15, func18),
# palindrome (func17), Rule-30 parity (func3), SHA-256 parity (func4), at 5 lengths: 45 runs.
# python sweep.py --base conf/target_functions_qwen_decimal.py \
#     --vary target_func=func7,func1,func20,func21,func15,func18,func17,func3,func4 \
#     --vary sequence_length=100,50,30,25,20 --yes
# Parameters in float32 here (model_dtype = 'float32', this project's default). The original very probably
# built qwen1.7B and deepseek with bf16 parameters (the hub configs' dtype, which transformers 4.4x-4.5x
# applied in from_config; llama3 it built directly, in float32): at lr 1e-5 most of AdamW's updates to
# those bf16 weights round away. To run as the original did: --set model_dtype='bfloat16' for
# qwen1.7B and deepseek (not llama3). docs/target_functions/README.md, "Where our defaults differ".
task = 'target_functions'
model = 'qwen1.7B'
n_layer = None          # None: the preset's published shape (28 layers, 2048 wide, 16 heads, 8 kv heads)
n_head = None
n_embd = None
target_func = 'func19'
sequence_length = 100
train_set_size = 200
test_set_size = 10000
batch_size = 20
n_epochs = 200
lr = 1e-5
eta_min = 1e-6
weight_decay = 1e-5      # the original's (conf/settings.py there: 0.00001); this project's default is 0.01
eval_every = 10
eval_batch_size = 512
