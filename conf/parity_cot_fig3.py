# Sparse parity, Figure 3 at the paper's settings: n=100, k=20..100 with CoT, a fixed set of 10^6 training
# inputs reused until 10^7 samples, GPT-2 1 layer x 1 head, width 720, lr 6e-5 / 8e-5 / 1e-4; the sample
# complexity is counted at exact match 0.995 (threshold). Whole model in bf16 as the original. A GPU job.
# The budget: the seed README's table gives 10^7 samples (the linear decay ends at 10^7); the original's
# plotting script (Figures/Fig3/fig3.1.py) reads runs of 10^6 samples, one epoch, whose decay ends at 10^6
# and whose "never" is 10^6. To run that variant: --set n_samples=1000000 (the rate then falls 10x faster).
# python sweep.py --base conf/parity_cot_fig3.py --vary k=20,30,40,50,60,70,80,90,100 \
#       --vary lr=6e-5,8e-5,1e-4 --yes
task = 'parity_cot'
n_bits = 100
k = 20
cot = True
n_train = 10 ** 6
n_samples = 10 ** 7
batch_size = 512
n_layer = 1
n_head = 1
n_embd = 720
n_positions = 2048
model_dtype = 'bfloat16'
fused = False  # the original's AdamW, op by op in bf16 (the fused kernel computes in float32)
lr = 6e-5
threshold = 0.995
eval_every_samples = None
eval_every_steps = 4  # the original's eval_steps = 2048 // batch 512, also across an epoch's partial batch
entropy_samples = 2048  # the whole validation set, as the original
position_accuracy = False
seed = 42
