# Sparse parity, Figure 1b at the paper's settings: n=30, k=3, GPT-2 4 layers x 4 heads, width 720, lr 1e-4,
# 10^7 fresh samples, with and without CoT; the normalised attention entropy of each head is logged at every
# evaluation (entropy_l<l>_h<h>) and falls when the accuracy jumps. Whole model in bf16 as the original.
# Plot: python plot.py results_new/<id>   (the *_entropy.png panel). A GPU job.
# python sweep.py --base conf/parity_cot_fig1b.py --vary cot=True,False --yes
task = 'parity_cot'
n_bits = 30
k = 3
cot = True
n_samples = 10 ** 7
batch_size = 512
n_layer = 4
n_head = 4
n_embd = 720
n_positions = 2048
model_dtype = 'bfloat16'
fused = False  # the original's AdamW, op by op in bf16 (the fused kernel computes in float32)
lr = 1e-4
eval_every_samples = None
eval_every_steps = 4  # the original's eval_steps = 2048 // batch 512, also across an epoch's partial batch
entropy_samples = 2048  # the whole validation set, as the original
seed = 42
