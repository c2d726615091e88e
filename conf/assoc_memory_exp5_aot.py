# Experiment 5, attention side: the AoT against H at N = 70 (4900 associations), d = d_h in {7, 10, 13};
# compare with conf/assoc_memory_exp5_mlp.py at W = 2 d (H - 1) (about the same parameter count).
# Original, d = 13: 0.085 -> 0.999; d = 10: 0.068 -> 0.594.
#   python sweep.py --base conf/assoc_memory_exp5_aot.py --vary d=7,10,13 --vary H=1,6,11,16,21,26,31 --vary seed=0,1,2,3,4 --yes
task = 'assoc_memory'
N = 70
alphas = [1.0, 1.0, 1.0]
model = 'aot'
d = 10
d_h = None
H = 11
nb_layers = 1
batch_size = 1024
num_batch = 256            # 262,144 sequences, 16,384 steps per run
n_epochs = 64
lr = 1e-2                  # original: lr = 0.1, lr_low = lr * 5e-2 (factors)
lr_end = 5e-4
eval_every = 16
seed = 0
# The original's protocol (docs/assoc_memory/README.md, 'Defaults that differ from the original'):
data_seed = 2222           # one table and one training set for every model of a sweep (seeds vary the init
                           # and the batch order only), as the original's notebook (seed 2222)
sampler = 'original'       # drawn as the original draws them: with 2222, its notebook's table and set exactly
init = 'original'          # its initialisation: embeddings U(+-1/sqrt(d)), U(+-1/sqrt(d_h)), Xavier q/k/v
lr_ramp = 'epoch'          # its LinearLR, stepped once per epoch (constant within an epoch)
