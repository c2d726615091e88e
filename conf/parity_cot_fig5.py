# Sparse parity, Figures 5, 10, 11 at the paper's settings: n=20, k=6 without CoT, fixed training sets of
# 5*10^3 .. 10^6 inputs reused until 10^7 samples, GPT-2 width 720, lr 1e-4; the training accuracy
# (train_accuracy, on a 2048-sample subsample of the training set) against the validation accuracy shows
# small sets overfitting and 10^6 generalising. The paper's shapes are 1L2H (below), 2L3H and 4L4H: rerun the
# sweep with --vary n_layer=2 --vary n_head=3, then with --vary n_layer=4 --vary n_head=4. A GPU job.
# python sweep.py --base conf/parity_cot_fig5.py --vary n_train=5000,10000,50000,100000,1000000 --yes
task = 'parity_cot'
n_bits = 20
k = 6
cot = False
n_train = 10000
n_samples = 10 ** 7
batch_size = 512
n_layer = 1
n_head = 2
n_embd = 720
n_positions = 2048
model_dtype = 'bfloat16'
fused = False  # the original's AdamW, op by op in bf16 (the fused kernel computes in float32)
lr = 1e-4
eval_every_samples = None
eval_every_steps = 4  # the original's eval_steps = 2048 // batch 512, also across an epoch's partial batch
entropy_samples = 2048  # the whole validation set, as the original
seed = 42
