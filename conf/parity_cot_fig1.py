# Sparse parity, Figures 1a and 2 at the paper's settings: n=30, k=1..4, with and without CoT, 10^7 fresh
# samples (the original pre-drew 10^7 distinct inputs; here each batch is drawn fresh, none a validation
# input), GPT-2 width 720, 1..4 layers x 1..4 heads, lr 6e-5 / 8e-5 / 1e-4, batch 512, evaluated every 2048
# samples. The whole model is cast to bf16 as the original did (model_dtype; fp32 may learn faster).
# Sample complexity = summary.json's sample_complexity (exact match 1.0). A GPU job (384 runs).
# python sweep.py --base conf/parity_cot_fig1.py --vary k=1,2,3,4 --vary cot=True,False \
#       --vary n_layer=1,2,3,4 --vary n_head=1,2,3,4 --vary lr=6e-5,8e-5,1e-4 --yes
task = 'parity_cot'
n_bits = 30
k = 3
cot = True
n_train = None
n_samples = 10 ** 7
batch_size = 512
n_layer = 4
n_head = 4
n_embd = 720
n_positions = 2048
dropout = 0.1
model_dtype = 'bfloat16'
fused = False  # the original's AdamW, op by op in bf16 (the fused kernel computes in float32)
lr = 1e-4
lr_schedule = 'linear'
eta_min = 0.0
weight_decay = 0.0
max_grad_norm = 1.0
eval_every_samples = None
eval_every_steps = 4  # the original's eval_steps = 2048 // batch 512, also across an epoch's partial batch
entropy_samples = 2048  # the whole validation set, as the original
seed = 42
