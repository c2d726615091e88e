# Sparse parity, Figure 4 at the paper's settings, the arm without CoT: n=20, k=6, a fixed set of 10^4
# training inputs reused for 1000 epochs (10^7 samples), GPT-2 width 720, 1..4 layers x 1..4 heads,
# lr 1e-4. Expected: every model stays near 50% validation accuracy while the training accuracy reaches 1.
# The CoT arm is conf/parity_cot_fig4_cot.py. Whole model in bf16 as the original. A GPU job.
# python sweep.py --base conf/parity_cot_fig4.py --vary n_layer=1,2,3,4 --vary n_head=1,2,3,4 --yes
task = 'parity_cot'
n_bits = 20
k = 6
cot = False
n_train = 10000
n_samples = 10 ** 7
batch_size = 512
n_layer = 1
n_head = 1
n_embd = 720
n_positions = 2048
model_dtype = 'bfloat16'
fused = False  # the original's AdamW, op by op in bf16 (the fused kernel computes in float32)
lr = 1e-4
eval_every_samples = None
eval_every_steps = 4  # the original's eval_steps = 2048 // batch 512, also across an epoch's partial batch
entropy_samples = 2048  # the whole validation set, as the original
seed = 42
