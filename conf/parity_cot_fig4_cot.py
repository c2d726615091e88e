# Sparse parity, Figure 4 at the paper's settings, the arm with CoT: n=20, k=6, the same 10^4 training inputs
# reused, GPT-2 1 layer x 1 head, width 720, lr 1e-5, 10^7 samples planned (the linear decay spans them).
# Expected: exact match 1.0 within ~5 epochs. At full width this arm runs on a CPU too (1.6 s a step on one
# core; stop it once it has learned). Whole model in bf16 as the original.
# python sweep.py --base conf/parity_cot_fig4_cot.py --vary seed=42x3 --yes
task = 'parity_cot'
n_bits = 20
k = 6
cot = True
n_train = 10000
n_samples = 10 ** 7
batch_size = 512
n_layer = 1
n_head = 1
n_embd = 720
n_positions = 2048
model_dtype = 'bfloat16'
fused = False  # the original's AdamW, op by op in bf16 (the fused kernel computes in float32)
lr = 1e-5
eval_every_samples = None
eval_every_steps = 4  # the original's eval_steps = 2048 // batch 512, also across an epoch's partial batch
entropy_samples = 2048  # the whole validation set, as the original
seed = 42
