# Sparse parity, Figure 9 at the paper's settings: n=20, k=12, fixed sets of 10^4, 10^5, 10^6 inputs reused
# until 10^7 samples, GPT-2 width 720, 1..8 layers x 1..8 heads, lr 6e-5 (the paper also tried 8e-5 and 1e-4:
# add --vary lr=6e-5,8e-5,1e-4; the heat map then shows each cell at its best lr, the original's max over
# lr). The original's heat map is the no-CoT arm (its data for 10^4..10^6 is made without CoT); its CoT arm
# is 1 layer x 1 head at 10^4 and 10^6 only. plot.py draws the heat map over layers x heads (*_heatmap.png),
# one map per (CoT, training set size). Whole model in bf16. A GPU job. The heat map (108 runs):
# python sweep.py --base conf/parity_cot_fig9.py --vary cot=False \
#       --vary n_train=10000,100000,1000000 --vary n_layer=1,2,3,4,6,8 --vary n_head=1,2,3,4,6,8 --yes
# The CoT arm (2 runs; add --vary n_layer=... --vary n_head=... for a CoT heat map, not in the paper):
# python sweep.py --base conf/parity_cot_fig9.py --vary cot=True --vary n_train=10000,1000000 \
#       --vary n_layer=1 --vary n_head=1 --yes
task = 'parity_cot'
n_bits = 20
k = 12
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
lr = 6e-5
eval_every_samples = None
eval_every_steps = 4  # the original's eval_steps = 2048 // batch 512, also across an epoch's partial batch
entropy_samples = 2048  # the whole validation set, as the original
seed = 42
